"""``selfimprove engine …``: every command on a real store, errors as one line and exit 2."""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfimprove.engine import SelfImprovementEngine
from selfimprove.surfaces.cli.engine import engine_app

from .conftest import BROKEN_F, FAST_F, SLOW_MODULE

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(engine_app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def _dump(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [(t, *row) for t in sorted(tables) for row in conn.execute(f"SELECT * FROM {t}")]


@pytest.fixture
def ledger(home: Path, project: Path, check_argv: list[str]) -> dict[str, int]:
    with SelfImprovementEngine(home=home, root=project, check_command=check_argv) as e:
        e.register_capability("lat", "performance", target=2.0, unit="s", direction="minimize")
        e.measure_capability("lat", 10.0)
        e.identify_weakness("flaky io", "reliability", "high", "timeouts")
        [w] = [w for w in e.analyze_weaknesses() if w.type == "efficiency"]
        exp = e.generate_experiments(w.id, 1)[0]
        e.test_approach(
            exp.id,
            lambda: 4.0,
            baseline_value=10.0,
            repeats=4,
            measure="value",
            direction="minimize",
        )
        good = e.apply_improvement("multiply", "mod.py", "f", FAST_F)
        bad = e.apply_improvement("add", "mod.py", "f", BROKEN_F)
    return {"weakness": w.id, "experiment": exp.id, "good": good.id, "bad": bad.id}


def test_listing_commands(home: Path, ledger: dict[str, int]) -> None:
    code, out, _ = run("capabilities", "--home", str(home), "--json")
    assert code == 0
    [cap] = json.loads(out)
    assert (cap["name"], cap["level"], cap["gap"]) == ("lat", "critical", 4.0)
    code, out, _ = run("capabilities", "--home", str(home))
    assert code == 0 and "critical" in out and "lower" in out

    code, out, _ = run("weaknesses", "--home", str(home), "--json")
    rows = json.loads(out)
    assert code == 0 and [r["severity"] for r in rows] == ["critical", "high"]
    code, out, _ = run("weaknesses", "--home", str(home), "--min-impact", "0.8")
    assert code == 0 and "400" in out and "flaky" not in out

    code, out, _ = run("experiments", "--home", str(home), "--weakness", str(ledger["weakness"]))
    assert code == 0 and "success" in out and "+60.0%" in out

    code, out, _ = run("improvements", "--home", str(home), "--json")
    data = json.loads(out)
    assert code == 0 and [r["status"] for r in data["code"]] == ["pending", "pending"]
    assert "original_content" not in data["code"][0]

    code, out, _ = run("assess", "--home", str(home), "--json")
    a = json.loads(out)
    # 0.6 × 1/1 experiments beat their expectation + 0.4 × 0/2 weaknesses resolved = 0.6: C
    assert code == 0 and a["components"]["exceeded"] == 1
    assert a["learning_quality_score"] == pytest.approx(0.6) and a["grade"] == "C"


def _code(project: Path, check_argv: list[str]) -> tuple[str, ...]:
    """The root and check command approval is configured with."""
    return ("--root", str(project), "--check-command", shlex.join(check_argv))


def test_approve_reject_rollback(
    home: Path, project: Path, check_argv: list[str], ledger: dict[str, int]
) -> None:
    mod = project / "mod.py"
    code, out, _ = run(
        "approve", str(ledger["good"]), "--home", str(home), "--actor", "carol",
        *_code(project, check_argv),
    )  # fmt: skip
    assert code == 0 and "applied" in out, out
    # what would run and be written was said first
    assert out.index("check command:") < out.index("applied")
    assert shlex.join(check_argv) in out and str(mod) in out
    assert b"return n * n" in mod.read_bytes()

    # the second proposal was made against the old file: refused, nothing changed
    db = home / "selfimprove.db"
    before = _dump(db)
    code, _, err = run(
        "approve", str(ledger["bad"]), "--home", str(home), *_code(project, check_argv)
    )
    assert code == 2 and err.startswith("error:") and "has changed since" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _dump(db) == before
    code, out, _ = run("reject", str(ledger["bad"]), "--home", str(home), "--reason", "stale")
    assert code == 0 and "rejected" in out

    code, out, _ = run("rollback", str(ledger["good"]), "--home", str(home), "--root", str(project))
    assert code == 0 and "rolled_back" in out
    assert mod.read_bytes() == SLOW_MODULE

    with SelfImprovementEngine(home=home) as e:
        trail = [(a.action, a.actor) for a in e.get_audit_trail(ledger["good"])]
    assert trail[1:4] == [("writing", "carol"), ("written", "carol"), ("applied", "carol")]
    applied = e.get_audit_trail(ledger["good"])[3].details
    assert applied["command"] == check_argv and applied["root"] == str(project)
    assert applied["digest"] == e.get_audit_trail(ledger["good"])[0].details["approval_sha256"]


def test_approve_exits_1_when_the_check_rejects_the_change(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    with SelfImprovementEngine(home=home, root=project, check_command=check_argv) as e:
        bad = e.apply_improvement("add", "mod.py", "f", BROKEN_F)
    code, out, _ = run("approve", str(bad.id), "--home", str(home), *_code(project, check_argv))
    assert code == 1 and "rejected" in out and "check command failed" in out
    assert (project / "mod.py").read_bytes() == SLOW_MODULE


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("approve", "99"), "unknown code improvement id 99"),
        (("rollback", "1"), "only an applied one can be rolled back"),
        (("experiments", "--weakness", "42"), "unknown weakness id 42"),
        (("improvements", "--status", "maybe"), "--status must be one of"),
    ],
)
def test_errors_are_one_line_exit_2_and_change_nothing(
    home: Path, ledger: dict[str, int], args: tuple[str, ...], needle: str
) -> None:
    db = home / "selfimprove.db"
    before = _dump(db)
    code, out, err = run(*args, "--home", str(home))
    assert code == 2, out + err
    assert err.startswith("error:") and needle in err and "Traceback" not in err
    assert _dump(db) == before


@pytest.mark.parametrize(
    "command",
    [
        "capabilities",
        "weaknesses",
        "experiments",
        "improvements",
        "propose",
        "show",
        "approve",
        "reject",
        "rollback",
        "assess",
    ],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0 and "Example: selfimprove engine" in out and "--home" in out


def test_the_engine_is_mounted_in_the_main_cli(home: Path) -> None:
    SelfImprovementEngine(home=home).close()  # a listing reads an existing home only
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFIMPROVE_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfimprove.surfaces.cli.app",
            "engine",
            "assess",
            "--home",
            str(home),
        ],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "learning quality 0.000 → grade D" in proc.stdout


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``selfimprove engine ARGS`` in a real process (the environment's SELFIMPROVE_DB kept)."""
    return subprocess.run(
        [sys.executable, "-m", "selfimprove", "engine", *args],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_improvements_show_the_command_the_file_and_the_diff(
    home: Path, project: Path, check_argv: list[str], ledger: dict[str, int]
) -> None:
    good, mod = ledger["good"], str((project / "mod.py").resolve())
    listed = cli("improvements", "--home", str(home), "--json", "--diff")
    assert listed.returncode == 0, listed.stderr
    [row, _] = json.loads(listed.stdout)["code"]
    assert row["command_line"] == shlex.join(check_argv) and row["check_command"] == check_argv
    assert row["file_path"] == mod and row["function_name"] == "f"
    assert "+    return n * n" in row["diff"]
    table = cli("improvements", "--home", str(home), "--diff")
    assert table.returncode == 0, table.stderr
    assert "check command" in table.stdout and "mod.py" in table.stdout
    assert "-    for _ in range(n):" in table.stdout and "+    return n * n" in table.stdout
    shown = cli("show", str(good), "--home", str(home))
    assert shown.returncode == 0, shown.stderr
    assert f"check command: {shlex.join(check_argv)}\n" in shown.stdout
    assert f"file: {mod}\n" in shown.stdout and "(as pinned at proposal)" in shown.stdout
    assert "--- a/mod.py\n+++ b/mod.py\n" in shown.stdout and "+    return n * n" in shown.stdout


def test_cli_approval_refuses_a_row_altered_in_the_database(
    home: Path, project: Path, tmp_path: Path, check_argv: list[str], ledger: dict[str, int]
) -> None:
    marker = tmp_path / "ran"
    evil = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]
    good, db = ledger["good"], home / "selfimprove.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE code_improvements SET check_command = ? WHERE id = ?", (json.dumps(evil), good)
        )
    before = _dump(db)
    # the command that runs is the one given here, so the altered row is refused
    proc = cli("approve", str(good), "--home", str(home), *_code(project, check_argv))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert f"records the check command `{shlex.join(evil)}`" in proc.stderr
    assert f"configured to run `{shlex.join(check_argv)}`" in proc.stderr
    # and given that very command, the row no longer matches what was proposed
    proc = cli("approve", str(good), "--home", str(home), *_code(project, evil))
    assert proc.returncode == 2 and "altered in the database" in proc.stderr, proc.stderr
    shown = cli("show", str(good), "--home", str(home))
    assert "ALTERED since proposal" in shown.stdout, shown.stdout
    assert not marker.exists()
    assert (project / "mod.py").read_bytes() == SLOW_MODULE and _dump(db) == before

    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE code_improvements SET check_command = ?, root = '/' WHERE id = ?",
            (json.dumps(check_argv), good),
        )
    before = _dump(db)
    proc = cli("approve", str(good), "--home", str(home), *_code(project, check_argv))
    assert proc.returncode == 2 and "records the root '/'" in proc.stderr, proc.stderr
    assert (project / "mod.py").read_bytes() == SLOW_MODULE and _dump(db) == before
