"""Code improvements in a git work tree, with pytest as the check: real git, real pytest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfimprove.engine import SelfImprovementEngine
from selfimprove.engine.codepatch import pytest_counts
from selfimprove.errors import CodePatchError
from selfimprove.store import CodeImprovementStatus

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

MODULE = b"def f(n):\n    total = 0\n    for _ in range(n):\n        total += n\n    return total\n"
FAST_F = "def f(n):\n    return n * n\n"
BROKEN_F = "def f(n):\n    return n + n\n"
TEST_MOD = b"import mod\n\n\ndef test_f():\n    assert mod.f(3) == 9\n"
#: Appends a line to $GIT_TEST_MARKER each time pytest starts in the project: proof it ran.
CONFTEST = b"import os\n\nopen(os.environ['GIT_TEST_MARKER'], 'a').write('ran\\n')\n"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository (no global or system git config: no identity configured) holding
    ``mod.py`` (a slow ``f``), ``other.py`` and ``tests/`` with one test, all committed."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TEST_MARKER", str(tmp_path / "pytest-ran"))
    # The check is still the real pytest, without this venv's plugins (hypothesis, timeout, ...)
    # that the tiny project does not use: 0.2 s a run instead of 1.4 s.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "mod.py").write_bytes(MODULE)
    (root / "other.py").write_bytes(b"X = 1\n")
    (root / "tests" / "test_mod.py").write_bytes(TEST_MOD)
    (root / "tests" / "conftest.py").write_bytes(CONFTEST)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "-c", "user.name=Tess", "-c", "user.email=tess@example.org", "commit", "-qm", "init")
    return root


def pytest_runs(tmp_path: Path) -> int:
    marker = tmp_path / "pytest-ran"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def test_approval_commits_with_its_ids_after_pytest_and_rollback_commits_a_revert(
    repo: Path, tmp_path: Path
) -> None:
    with SelfImprovementEngine(home=tmp_path / "home", root=repo, actor="alice") as engine:
        assert engine.check_command == PYTEST  # no command configured, the root has tests
        rec = engine.apply_improvement("multiply, do not loop", "mod.py", "f", FAST_F)
        assert rec.check_command == PYTEST
        assert engine.plan_approval(rec.id).work_tree == repo
        # someone else's work in the same tree: neither committed nor touched
        (repo / "other.py").write_bytes(b"X = 2\n")
        (repo / "notes.txt").write_text("mine")
        first = head(repo)

        applied = engine.approve_improvement(rec.id, actor="bob")

        assert applied.status is CodeImprovementStatus.APPLIED
        assert pytest_runs(tmp_path) == 2  # before and after the change
        commit = head(repo)
        assert git(repo, "rev-parse", "HEAD^").strip() == first
        assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["mod.py"]
        assert git(repo, "show", "HEAD:mod.py").encode() == (repo / "mod.py").read_bytes()
        assert sorted(git(repo, "status", "--porcelain").splitlines()) == [
            " M other.py",
            "?? notes.txt",
        ]
        trail = engine.get_audit_trail(rec.id)
        assert [a.action for a in trail] == ["proposed", "writing", "written", "applied"]
        message = git(repo, "log", "-1", "--format=%B")
        assert message.startswith(f"selfimprove: multiply, do not loop (code improvement {rec.id})")
        assert f"Improvement-Id: {rec.id}\n" in message
        assert f"Audit-Id: {trail[1].id}\n" in message  # the entry that announced the write
        assert "Measured-Gain: not measured (the check printed no number)" in message
        assert "Check: `" in message and "passed (1 passed)" in message
        assert "approved by bob" in message
        # no identity configured anywhere: the fallback author
        assert git(repo, "log", "-1", "--format=%an <%ae>").strip() == (
            "selfimprove <selfimprove@localhost>"
        )
        details = trail[-1].details
        assert details["git"]["commit"] == commit and details["git"]["branch"] == "main"
        assert details["git"]["audit_id"] == trail[1].id
        after = details["check_result"]["after"]
        assert after["passed"] and after["returncode"] == 0 and after["tests"] == {"passed": 1}
        assert "1 passed" in after["tail"]
        assert applied.check_after["runs"][0]["tests"] == {"passed": 1}

        # git refuses the revert commit (another git process holds the index): nothing changes
        lock = repo / ".git" / "index.lock"
        lock.touch()
        with pytest.raises(CodePatchError, match=r"index\.lock.*was not rolled back"):
            engine.rollback_improvement(rec.id)
        assert (
            head(repo) == commit
            and (repo / "mod.py").read_bytes() == git(repo, "show", "HEAD:mod.py").encode()
        )
        assert engine.store.get_code_improvement(rec.id).status is CodeImprovementStatus.APPLIED
        assert engine.get_audit_trail(rec.id)[-1].action == "interrupted"
        lock.unlink()

        back = engine.rollback_improvement(rec.id, reason="keep the loop")

        assert back.status is CodeImprovementStatus.ROLLED_BACK
        assert (repo / "mod.py").read_bytes() == MODULE
        assert git(repo, "rev-parse", "HEAD^").strip() == commit
        revert = git(repo, "log", "-1", "--format=%B")
        assert revert.startswith('Revert "selfimprove: multiply, do not loop')
        assert f"This reverts commit {commit}." in revert
        assert f"Improvement-Id: {rec.id}\n" in revert and "keep the loop" in revert
        assert git(repo, "diff", first, "HEAD", "--", "mod.py") == ""
        assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["mod.py"]
        rolled = engine.get_audit_trail(rec.id)[-1]
        assert rolled.action == "rolled_back"
        assert rolled.details["git"] == {
            "commit": head(repo),
            "reverts": commit,
            "work_tree": str(repo),
            "audit_id": engine.get_audit_trail(rec.id)[-2].id,
        }
        assert (repo / "other.py").read_bytes() == b"X = 2\n"


def _nothing_happened(
    engine: SelfImprovementEngine, rec_id: int, repo: Path, tmp_path: Path, commit: str
) -> None:
    assert head(repo) == commit
    assert engine.store.get_code_improvement(rec_id).status is CodeImprovementStatus.PENDING
    assert [a.action for a in engine.get_audit_trail(rec_id)] == ["proposed"]
    assert pytest_runs(tmp_path) == 0


def test_a_file_with_uncommitted_changes_is_refused(repo: Path, tmp_path: Path) -> None:
    edited = MODULE + b"\n# not committed yet\n"
    (repo / "mod.py").write_bytes(edited)
    with SelfImprovementEngine(home=tmp_path / "home", root=repo) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        commit = head(repo)
        with pytest.raises(CodePatchError, match=r"^mod.py has uncommitted changes .* M mod.py"):
            engine.approve_improvement(rec.id)
        assert (repo / "mod.py").read_bytes() == edited
        _nothing_happened(engine, rec.id, repo, tmp_path, commit)
        git(repo, "add", "mod.py")  # staged is still uncommitted
        with pytest.raises(CodePatchError, match=r"uncommitted changes .*M  mod.py"):
            engine.approve_improvement(rec.id)
        _nothing_happened(engine, rec.id, repo, tmp_path, commit)


def test_a_file_changed_and_committed_after_the_proposal_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    with SelfImprovementEngine(home=tmp_path / "home", root=repo) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        changed = MODULE.replace(b"total = 0", b"total = 0  # edited")
        (repo / "mod.py").write_bytes(changed)
        git(repo, "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qam", "edit")
        with pytest.raises(CodePatchError, match=r"has changed since improvement .* proposed"):
            engine.approve_improvement(rec.id)
        assert (repo / "mod.py").read_bytes() == changed
        _nothing_happened(engine, rec.id, repo, tmp_path, head(repo))


def test_a_failing_test_run_restores_the_file_and_leaves_no_commit(
    repo: Path, tmp_path: Path
) -> None:
    first = head(repo)
    with SelfImprovementEngine(home=tmp_path / "home", root=repo) as engine:
        rec = engine.apply_improvement("add instead", "mod.py", "f", BROKEN_F)
        out = engine.approve_improvement(rec.id)
        assert out.status is CodeImprovementStatus.REJECTED
        assert "check command failed after the change (exit 1)" in out.reason
        assert pytest_runs(tmp_path) == 2
        assert head(repo) == first and git(repo, "status", "--porcelain") == ""
        assert (repo / "mod.py").read_bytes() == MODULE
        rejected = engine.get_audit_trail(rec.id)[-1]
        assert rejected.action == "auto_rejected" and "git" not in rejected.details
        after = rejected.details["check_result"]["after"]
        assert after["passed"] is False and after["returncode"] == 1
        assert after["tests"] == {"failed": 1}
        assert "assert 6 == 9" in after["tail"]
        assert rejected.details["check_result"]["before"]["tests"] == {"passed": 1}


def test_a_commit_git_refuses_rejects_the_change_and_restores_the_file(
    repo: Path, tmp_path: Path
) -> None:
    first = head(repo)
    with SelfImprovementEngine(home=tmp_path / "home", root=repo) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        (repo / ".git" / "index.lock").touch()  # as while another git command runs
        out = engine.approve_improvement(rec.id)
        assert out.status is CodeImprovementStatus.REJECTED and out.decided_by == "git"
        assert "git commit of mod.py failed" in out.reason and "index.lock" in out.reason
        assert head(repo) == first and (repo / "mod.py").read_bytes() == MODULE
        assert engine.get_audit_trail(rec.id)[-1].action == "auto_rejected"


def test_without_git_on_path_a_work_tree_is_refused_clearly(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SelfImprovementEngine(home=tmp_path / "home", root=repo) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        commit = head(repo)
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        with pytest.raises(CodePatchError, match="git executable is not on PATH"):
            engine.approve_improvement(rec.id)
        monkeypatch.undo()
        assert (repo / "mod.py").read_bytes() == MODULE
        _nothing_happened(engine, rec.id, repo, tmp_path, commit)


def test_outside_git_pytest_is_the_check_only_where_the_root_has_tests(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    (root / "mod.py").write_bytes(MODULE)
    with SelfImprovementEngine(home=tmp_path / "home", root=root) as engine:
        assert engine.check_command == []
        (root / "test_mod.py").write_bytes(TEST_MOD)
        assert engine.check_command == PYTEST
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        assert engine.plan_approval(rec.id).work_tree is None
        engine.code.check.pytest_default = False
        assert engine.check_command == []
    with SelfImprovementEngine(home=tmp_path / "home", root=root, check_command="true") as engine:
        assert engine.check_command == ["true"]  # a configured command always wins


@pytest.mark.parametrize(
    ("output", "counts"),
    [
        ("....\n4 passed in 0.02s\n", {"passed": 4}),
        ("F.\n1 failed, 1 passed, 1 warning in 0.03s", {"failed": 1, "passed": 1, "warnings": 1}),
        ("===== 2 errors in 0.10s =====", {"errors": 2}),
        ("no tests ran in 0.01s", {}),
        ("ImportError while loading conftest", None),
    ],
)
def test_pytest_counts_read_the_summary_line(output: str, counts: dict[str, int] | None) -> None:
    assert pytest_counts(output) == counts
