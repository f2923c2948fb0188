"""``selfimprove engine propose``: a code improvement proposed, read, approved and rolled back from
the command line alone, in real processes; refusals are one line, exit 2, nothing stored."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfimprove.engine import SelfImprovementEngine
from selfimprove.surfaces.cli.engine import MAX_CODE_BYTES, engine_app

README = Path(__file__).resolve().parents[2] / "README.md"

#: A slow ``square``, with a non-ASCII comment and a line the patch must leave alone.
SLOW = (
    "# naïve on purpose\n"
    "def square(n):\n"
    "    total = 0\n"
    "    for _ in range(n):\n"
    "        total += n\n"
    "    return total\n"
    "\n"
    "\n"
    "LIMIT = 10  # untouched\n"
).encode()
FAST = "def square(n):\n    return n * n\n"


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m selfimprove engine ARGS`` in a real process run from ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "selfimprove", "engine", *args],
        cwd=cwd,
        input=stdin,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check(marker: Path) -> str:
    """A check command that passes when ``square(7) == 49`` and appends to ``marker``."""
    code = (
        "import mymodule; assert mymodule.square(7) == 49; "
        f"open({str(marker)!r}, 'a').write('ran\\n')"
    )
    return shlex.join([sys.executable, "-c", code])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding ``mymodule.py`` (the slow ``square``): the root and working folder."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "mymodule.py").write_bytes(SLOW)
    return root


def _run_printed(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A ``selfimprove …`` line that ``propose`` printed, run as a shell would split it."""
    argv = shlex.split(line)
    assert argv[:2] == ["selfimprove", "engine"], line
    return cli(*argv[2:], cwd=cwd)


def test_propose_show_approve_rollback_from_the_command_line(
    home: Path, project: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "check-ran"
    check = _check(marker)
    proposed = cli(
        "propose", "mymodule.py", "square", "--code", FAST,
        "--description", "multiply, do not loop", "--home", str(home),
        "--check-command", check, "--actor", "ada",
        cwd=project,
    )  # fmt: skip
    assert proposed.returncode == 0, proposed.stderr
    out = proposed.stdout
    assert out.startswith("improvement 1 (multiply, do not loop): pending — square in "), out
    assert "+    return n * n\n" in out and "-    for _ in range(n):\n" in out
    [digest] = re.findall(r"^digest: ([0-9a-f]{64})$", out, re.M)
    # recorded, nothing written, nothing run
    assert (project / "mymodule.py").read_bytes() == SLOW and not marker.exists()
    steps = dict(re.findall(r"^  (read it|approve|or reject): +(.+)$", out, re.M))
    assert steps["read it"] == f"selfimprove engine show 1 --home {home}"
    assert f"--digest {digest[:16]}" in steps["approve"]

    shown = _run_printed(steps["read it"], project)
    assert shown.returncode == 0, shown.stderr
    assert f"digest: {digest} (as pinned at proposal)" in shown.stdout
    assert "proposed by: ada" in shown.stdout and f"check command: {check}\n" in shown.stdout
    assert "--- a/mymodule.py\n+++ b/mymodule.py\n" in shown.stdout
    assert "+    return n * n" in shown.stdout

    approved = _run_printed(steps["approve"], project)  # the exact command propose printed
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "applied" in approved.stdout
    assert (project / "mymodule.py").read_bytes() == SLOW.replace(
        b"    total = 0\n    for _ in range(n):\n        total += n\n    return total\n",
        b"    return n * n\n",
    )
    assert marker.read_text() == "ran\nran\n"  # the check ran before and after the change

    rolled = cli("rollback", "1", "--home", str(home), cwd=project)
    assert rolled.returncode == 0 and "rolled_back" in rolled.stdout, rolled.stderr
    assert (project / "mymodule.py").read_bytes() == SLOW  # the exact bytes


def test_propose_reads_the_code_from_stdin_as_json(home: Path, project: Path) -> None:
    done = cli(
        "propose", "mymodule.py", "square", "--code-file", "-", "--description", "from stdin",
        "--home", str(home), "--json",
        cwd=project, stdin=FAST,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["id"], row["status"], row["new_code"]) == (1, "pending", FAST)
    assert row["digest_state"] == "as pinned at proposal" and "+    return n * n" in row["diff"]
    assert row["next"]["approve"].endswith(f"--digest {row['digest'][:16]}")
    assert "original_content" not in row
    assert (project / "mymodule.py").read_bytes() == SLOW


def test_a_refused_proposal_is_one_line_exit_2_and_stores_nothing(
    home: Path, project: Path
) -> None:
    args = ("propose", "mymodule.py", "cube", "--code", "def cube(n):\n    return n ** 3\n")
    refused = cli(*args, "--description", "no such function", "--home", str(home), cwd=project)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("error:") and "has no function 'cube'" in refused.stderr
    assert "functions found: square" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert not home.exists()  # refused before a home was made
    SelfImprovementEngine(home=home).close()
    refused = cli(*args, "--description", "no such function", "--home", str(home), cwd=project)
    assert refused.returncode == 2, refused.stderr
    listed = cli("improvements", "--home", str(home), "--json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"code": [], "model_promotions": []}
    assert (project / "mymodule.py").read_bytes() == SLOW


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("mymodule.py", "cube", "--code", FAST), "has no function 'cube'"),
        (("../elsewhere.py", "square", "--code", FAST), "outside the allowed root"),
        (("absent.py", "square", "--code", FAST), "is not an existing regular file"),
        (("mymodule.py", "square", "--code", "def square(n:\n"), "does not parse as Python"),
        (("mymodule.py", "square", "--code", "def cube(n):\n    return 1\n"), "not 'square'"),
        (("mymodule.py", "square", "--code", " \n"), "--code is empty"),
        (("mymodule.py", "square", "--code-file", "-"), "code read from stdin is empty"),
        (("mymodule.py", "square", "--code", FAST, "--code-file", "x.py"), "not both"),
        (("mymodule.py", "square"), "--code TEXT or --code-file PATH"),
        (("mymodule.py", "square", "--code-file", "missing.py"), "cannot use missing.py"),
        (("mymodule.py", "square", "--code-file", "."), "cannot use ."),
        (("mymodule.py", "square", "--code-file", "latin1.py"), "is not UTF-8 text"),
        (("mymodule.py", "square", "--code-file", "big.py"), f"over {MAX_CODE_BYTES} bytes"),
        (("mymodule.py", "square", "--code", FAST, "--check-command", "'"), "cannot split"),
        (("mymodule.py", "square", "--code", "def square(n):\n    total = 0\n"), "identical"),
    ],
)
def test_bad_input_is_refused_in_one_line_with_nothing_stored(
    home: Path,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    needle: str,
) -> None:
    monkeypatch.chdir(project)
    (project / "latin1.py").write_bytes("def square(n):\n    return n  # é\n".encode("latin-1"))
    (project / "big.py").write_bytes(b"#" * (MAX_CODE_BYTES + 1))
    (project / "mymodule.py").write_bytes(b"def square(n):\n    total = 0\n")
    SelfImprovementEngine(home=home).close()
    result = runner.invoke(
        engine_app,
        ["propose", *args, "--description", "d", "--home", str(home)],
        input="",
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error:") and needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with SelfImprovementEngine(home=home) as engine:
        assert engine.list_improvements() == [] and engine.get_audit_trail() == []


@pytest.mark.parametrize("description", ["", "   ", "x" * 257])
def test_the_description_is_bounded(home: Path, project: Path, description: str) -> None:
    result = runner.invoke(
        engine_app,
        ["propose", str(project / "mymodule.py"), "square", "--code", FAST, "--root",
         str(project), "--description", description, "--home", str(home)],
    )  # fmt: skip
    assert result.exit_code == 2 and "--description must be 1 to 256 characters" in result.stderr
    assert not home.exists()


#: Runs ``selfimprove engine ARGV`` in this process and prints its exit code and which heavy
#: modules were imported by then.
PROBE = r"""
import json, sys
from selfimprove.surfaces.cli import app
try:
    app(args=["engine", "propose", *json.loads(sys.argv[1])], prog_name="selfimprove")
    code = 0
except SystemExit as exc:
    code = exc.code
heavy = ("torch", "sqlalchemy", "selfimprove.engine", "selfimprove.store", "selfimprove.loop")
print("PROBE", json.dumps([code, [m for m in heavy if m in sys.modules]]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["m.py", "f", "--code", "x", "--code-file", "y", "--description", "d"],
        ["m.py", "f", "--code", "", "--description", "d"],
        ["m.py", "f", "--code", "x", "--description", ""],
        ["m.py", "f", "--code", "x"],  # no --description: a usage error
    ],
)
def test_argument_errors_import_no_heavy_module(tmp_path: Path, argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFIMPROVE_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        cwd=tmp_path,
        env={**env, "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    code, imported = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("PROBE "))
    assert code == (0 if argv == ["--help"] else 2), done.stderr
    assert imported == [] and "Traceback" not in done.stderr
    if argv == ["--help"]:
        assert "Example: selfimprove engine propose" in done.stdout
    assert not (tmp_path / ".selfimprove").exists()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_cli_proposal_in_a_git_work_tree_is_committed_and_reverted(
    home: Path, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)  # no identity: the engine's fallback
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "mymodule.py")
    _git(project, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qm", "init")
    first = _git(project, "rev-parse", "HEAD").strip()
    check = ("--check-command", _check(tmp_path / "check-ran"))
    proposed = cli(
        "propose", "mymodule.py", "square", "--code", FAST, "--description", "multiply",
        "--home", str(home), *check, cwd=project,
    )  # fmt: skip
    assert proposed.returncode == 0, proposed.stderr
    approved = cli("approve", "1", "--home", str(home), *check, cwd=project)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    message = _git(project, "log", "-1", "--format=%B")
    assert message.startswith("selfimprove: multiply (code improvement 1)"), message
    assert _git(project, "show", "--name-only", "--format=", "HEAD").split() == ["mymodule.py"]

    rolled = cli("rollback", "1", "--home", str(home), cwd=project)
    assert rolled.returncode == 0, rolled.stderr
    assert _git(project, "log", "-1", "--format=%s").startswith('Revert "selfimprove: multiply')
    assert _git(project, "diff", first, "HEAD") == ""
    assert "mymodule.py" not in _git(project, "status", "--porcelain")
    assert (project / "mymodule.py").read_bytes() == SLOW


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_readme_command_line_proposal_runs_in_bash(tmp_path: Path, home: Path) -> None:
    """The README's ``propose`` block, run by bash in an empty folder with this environment's
    ``selfimprove`` and ``python`` first on PATH; then its ``approve`` line agrees with it.
    (``home`` only clears the SELFIMPROVE_* variables: the README names its own home.)"""
    text = README.read_text()
    proposal = re.search(r"```bash\n(printf [^`]*?selfimprove engine propose .*?)```", text, re.S)
    then = re.search(r"Then, from the same folder:\n\n```bash\n(.*?)```", text, re.S)
    assert proposal is not None and then is not None
    lines = then.group(1).replace("\\\n", " ").splitlines()
    [approve] = [line.split("  # ")[0] for line in lines if "engine approve" in line]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    folder = tmp_path / "readme"
    folder.mkdir()
    for script in (proposal.group(1), approve):
        done = subprocess.run(
            ["bash", "-euc", script],
            cwd=folder,
            env={**env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (script, done.stdout, done.stderr)
        if "propose" in script:
            assert done.stdout.startswith("improvement 1 (multiply, do not loop): pending")
            assert "total = 0" in (folder / "mymodule.py").read_text()  # untouched
    assert (folder / "mymodule.py").read_text() == "def square(n):\n    return n * n\n"
