"""Code improvements: approval, check command, measured effect, rollback, root, audit trail."""

from __future__ import annotations

import hashlib
import shlex
import sys
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from selfimprove.engine import SelfImprovementEngine
from selfimprove.engine._approval import command_refusal, digest_refusal, root_refusal
from selfimprove.errors import CodePatchError, ConfigError
from selfimprove.store import CodeImprovementStatus

from .conftest import BROKEN_F, FAST_F, SLOW_MODULE


def _engine(
    home: Path, project: Path, check: list[str], repeats: int = 1, **kw: Any
) -> SelfImprovementEngine:
    return SelfImprovementEngine(
        home=home, root=project, check_command=check, check_repeats=repeats, actor="alice", **kw
    )


def test_speed_up_applied_after_approval_measured_and_rolled_back_exactly(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    mod = project / "mod.py"
    with _engine(home, project, check_argv, repeats=5) as engine:
        rec = engine.apply_improvement("multiply, do not loop", "mod.py", "f", FAST_F)
        # proposed only: the file is untouched until someone approves
        assert rec.status is CodeImprovementStatus.PENDING
        assert mod.read_bytes() == SLOW_MODULE
        assert rec.sha256_before == hashlib.sha256(SLOW_MODULE).hexdigest()
        assert rec.md5_before == hashlib.md5(SLOW_MODULE).hexdigest()
        assert rec.original_content == SLOW_MODULE

        applied = engine.approve_improvement(rec.id, actor="bob")
        assert applied.status is CodeImprovementStatus.APPLIED and applied.decided_by == "bob"
        patched = mod.read_bytes()
        assert hashlib.sha256(patched).hexdigest() == rec.sha256_after
        assert b"    return n * n\n" in patched and b"for _ in range(n)" not in patched
        # everything but f is byte-identical
        assert patched.startswith(SLOW_MODULE[: SLOW_MODULE.index(b"def f(n):")])
        assert patched.endswith(SLOW_MODULE[SLOW_MODULE.index(b"\n\nclass Shape") :])

        # the check printed its timing: five runs before, five after, compared (Mann-Whitney:
        # every run after faster than every run before gives exactly p = 2 / C(10, 5))
        perf = applied.performance
        assert applied.check_before["passed"] and len(applied.check_before["values"]) == 5
        assert max(applied.check_after["values"]) < min(applied.check_before["values"])
        assert perf["improvement"] > 0.5 and perf["significant"]
        assert perf["p_value"] == pytest.approx(2 / 252)
        [m] = engine.store.list_improvement_measurements(perf["metric"])
        assert m.improvement_id == rec.id and m.direction == "minimize"
        assert m.test == "mann_whitney_u" and m.confidence == "high"
        print(  # the figures, for the report (pytest -s)
            f"code improvement: {perf['before']:.4g} s → {perf['after']:.4g} s, "
            f"improvement {perf['improvement']:.4f}, p={perf['p_value']:.3g}"
        )

        back = engine.rollback_improvement(rec.id, reason="keep the loop for now")
        assert back.status is CodeImprovementStatus.ROLLED_BACK
        assert mod.read_bytes() == SLOW_MODULE  # exact bytes
        trail = engine.get_audit_trail(rec.id)
        assert [a.action for a in trail] == [
            *("proposed", "writing", "written", "applied", "rolling_back", "rolled_back")
        ]
        assert [a.actor for a in trail] == ["alice", "bob", "bob", "bob", "alice", "alice"]
        assert trail[-1].sha256_before == rec.sha256_after
        assert trail[-1].sha256_after == rec.sha256_before
        with pytest.raises(CodePatchError, match="only an applied one can be rolled back"):
            engine.rollback_improvement(rec.id)


def test_a_change_that_breaks_the_check_is_rejected_and_the_file_restored(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    mod = project / "mod.py"
    with _engine(home, project, check_argv) as engine:
        rec = engine.apply_improvement("add instead", "mod.py", "f", BROKEN_F)
        out = engine.approve_improvement(rec.id)
        assert out.status is CodeImprovementStatus.REJECTED
        assert out.decided_by == "check_command"
        assert "check command failed after the change" in out.reason
        assert "f(3) != 9" in out.check_after["runs"][-1]["output_tail"]
        assert mod.read_bytes() == SLOW_MODULE
        actions = [a.action for a in engine.get_audit_trail(rec.id)]
        assert actions == ["proposed", "writing", "written", "auto_rejected"]
        assert out.performance == {}


def test_auto_improve_applies_at_once_but_still_checks(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    with _engine(home, project, check_argv, auto_improve=True) as engine:
        broken = engine.apply_improvement("add instead", "mod.py", "f", BROKEN_F)
        assert broken.status is CodeImprovementStatus.REJECTED
        assert (project / "mod.py").read_bytes() == SLOW_MODULE
        good = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        assert good.status is CodeImprovementStatus.APPLIED
        assert good.decided_by == "alice (auto_improve)"


def test_a_path_outside_the_root_is_refused(
    home: Path, project: Path, tmp_path: Path, check_argv: list[str]
) -> None:
    outside = tmp_path / "outside.py"
    outside.write_bytes(SLOW_MODULE)
    (project / "sneaky.py").symlink_to(outside)
    with _engine(home, project, check_argv) as engine:
        for path in (outside, "../outside.py", "sneaky.py"):
            with pytest.raises(CodePatchError, match="outside the allowed root"):
                engine.apply_improvement("x", path, "f", FAST_F)
        assert engine.list_improvements() == []
    assert outside.read_bytes() == SLOW_MODULE


@pytest.mark.parametrize("name", ["", "   ", "x" * 257])
def test_an_empty_or_overlong_name_is_refused(
    home: Path, project: Path, check_argv: list[str], name: str
) -> None:
    with _engine(home, project, check_argv) as engine:
        with pytest.raises(ConfigError, match="must be 1 to 256 characters"):
            engine.apply_improvement(name, "mod.py", "f", FAST_F)
        assert engine.list_improvements() == []


def test_rollback_does_not_overwrite_a_file_edited_since(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    mod = project / "mod.py"
    with _engine(home, project, check_argv) as engine:
        rec = engine.approve_improvement(
            engine.apply_improvement("multiply", "mod.py", "f", FAST_F).id
        )
        edited = mod.read_bytes() + b"\n# someone else's edit\n"
        mod.write_bytes(edited)
        with pytest.raises(CodePatchError, match=r"has changed since improvement .* applied"):
            engine.rollback_improvement(rec.id)
        assert mod.read_bytes() == edited
        assert engine.store.get_code_improvement(rec.id).status is CodeImprovementStatus.APPLIED


def test_approval_refuses_a_file_changed_since_the_proposal(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    mod = project / "mod.py"
    with _engine(home, project, check_argv) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        mod.write_bytes(SLOW_MODULE.replace(b"unchanged", b"edited"))
        with pytest.raises(CodePatchError, match=r"has changed since improvement .* proposed"):
            engine.approve_improvement(rec.id)
        assert b"edited" in mod.read_bytes()
        assert engine.store.get_code_improvement(rec.id).status is CodeImprovementStatus.PENDING
        rejected = engine.reject_improvement(rec.id, "stale proposal")
        assert rejected.status is CodeImprovementStatus.REJECTED
        with pytest.raises(CodePatchError, match="only a pending one can be approved"):
            engine.approve_improvement(rec.id)


def test_a_check_that_fails_before_the_change_blocks_approval(home: Path, project: Path) -> None:
    import sys

    failing = [sys.executable, "-c", "raise SystemExit('project already broken')"]
    with _engine(home, project, failing) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        with pytest.raises(CodePatchError, match="fails before the change"):
            engine.approve_improvement(rec.id)
        assert (project / "mod.py").read_bytes() == SLOW_MODULE
        assert engine.store.get_code_improvement(rec.id).status is CodeImprovementStatus.PENDING


# ---------------------------------------------------------------------- a ledger not trusted
_ROWS = sa.table(
    "code_improvements",
    sa.column("id", sa.Integer),
    sa.column("check_command", sa.JSON),
    sa.column("root", sa.Text),
    sa.column("file_path", sa.Text),
    sa.column("patched_content", sa.LargeBinary),
    sa.column("sha256_after", sa.String),
)


def tamper(engine: SelfImprovementEngine, improvement_id: int, **values: object) -> None:
    """Alter a code improvement's row behind the engine, as anyone who can write the database."""
    with engine.store.engine.begin() as conn:
        conn.execute(sa.update(_ROWS).where(_ROWS.c.id == improvement_id).values(**values))


def _marker_argv(marker: Path) -> list[str]:
    """A command that leaves ``marker`` behind if it ever runs."""
    return [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]


def _untouched(engine: SelfImprovementEngine, rec_id: int, project: Path) -> None:
    assert (project / "mod.py").read_bytes() == SLOW_MODULE
    assert engine.store.get_code_improvement(rec_id).status is CodeImprovementStatus.PENDING
    assert [a.action for a in engine.get_audit_trail(rec_id)] == ["proposed"]


def test_a_check_command_altered_in_the_database_never_runs(
    home: Path, project: Path, tmp_path: Path, check_argv: list[str]
) -> None:
    marker = tmp_path / "ran"
    with _engine(home, project, check_argv) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        tamper(engine, rec.id, check_command=_marker_argv(marker))
        with pytest.raises(CodePatchError, match="records the check command") as refused:
            engine.approve_improvement(rec.id)
        message = str(refused.value)
        assert "\n" not in message and shlex.join(check_argv) in message
        assert shlex.join(_marker_argv(marker)) in message
        _untouched(engine, rec.id, project)
    # configured with that very command, the engine still sees that the row was altered
    with _engine(home, project, _marker_argv(marker)) as engine:
        with pytest.raises(CodePatchError, match="altered in the database since it was proposed"):
            engine.approve_improvement(rec.id)
        _untouched(engine, rec.id, project)
    assert not marker.exists()


def test_a_root_or_file_altered_in_the_database_is_refused(
    home: Path, project: Path, tmp_path: Path, check_argv: list[str]
) -> None:
    outside = tmp_path / "outside.py"
    outside.write_bytes(SLOW_MODULE)
    with _engine(home, project, check_argv) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        tamper(engine, rec.id, root="/")
        with pytest.raises(CodePatchError, match="records the root '/', but this engine's root"):
            engine.approve_improvement(rec.id)
        tamper(engine, rec.id, root=str(project), file_path=str(outside))
        with pytest.raises(CodePatchError, match="outside the allowed root"):
            engine.approve_improvement(rec.id)
        tamper(engine, rec.id, file_path=str(project / "mod.py"))
        # the patched bytes replaced, their hash too: the digest pinned at proposal differs
        evil = SLOW_MODULE + b"import os\n"
        tamper(engine, rec.id, patched_content=evil, sha256_after=sha256(evil).hexdigest())
        with pytest.raises(CodePatchError, match="altered in the database"):
            engine.plan_approval(rec.id)
        _untouched(engine, rec.id, project)
    assert outside.read_bytes() == SLOW_MODULE


def test_rollback_refuses_another_root_and_altered_bytes(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    mod = project / "mod.py"
    with _engine(home, project, check_argv) as engine:
        rec = engine.approve_improvement(
            engine.apply_improvement("multiply", "mod.py", "f", FAST_F).id
        )
        patched = mod.read_bytes()
        tamper(engine, rec.id, root="/")
        with pytest.raises(CodePatchError, match="records the root '/'"):
            engine.rollback_improvement(rec.id)
        tamper(engine, rec.id, root=str(project))
        with (
            _engine(home, project.parent, check_argv) as elsewhere,
            pytest.raises(CodePatchError, match="but this engine's root is"),
        ):
            elsewhere.rollback_improvement(rec.id)
        assert mod.read_bytes() == patched
        assert engine.store.get_code_improvement(rec.id).status is CodeImprovementStatus.APPLIED
        assert engine.rollback_improvement(rec.id).status is CodeImprovementStatus.ROLLED_BACK


def test_approval_pins_the_digest_shown_and_audits_what_ran(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    with _engine(home, project, check_argv) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        plan = engine.plan_approval(rec.id)
        assert plan.command == tuple(check_argv) and plan.root == project.resolve()
        assert plan.file_path == (project / "mod.py").resolve()
        assert "-    for _ in range(n):" in plan.diff and "+    return n * n" in plan.diff
        assert plan.digest == engine.get_audit_trail(rec.id)[0].details["approval_sha256"]
        with pytest.raises(CodePatchError, match="not the 'beef"):
            engine.approve_improvement(rec.id, expected_digest="beef" * 4)
        with pytest.raises(CodePatchError, match="at least 12 hex digits"):
            engine.approve_improvement(rec.id, expected_digest=plan.digest[:6])
        _untouched(engine, rec.id, project)
        out = engine.approve_improvement(rec.id, expected_digest=plan.digest[:16].upper())
        assert out.status is CodeImprovementStatus.APPLIED
        applied = engine.get_audit_trail(rec.id)[-1]
        assert applied.action == "applied"
        assert applied.details["command"] == check_argv
        assert applied.details["root"] == str(project.resolve())
        assert applied.details["digest"] == plan.digest


def test_each_refusal_is_a_pure_decision_with_its_reason() -> None:
    assert command_refusal(1, ["pytest", "-q"], ["pytest", "-q"]) is None
    why = command_refusal(1, ["sh", "-c", "id > /tmp/x"], ["pytest", "-q"])
    assert why is not None and "`sh -c 'id > /tmp/x'`" in why and "`pytest -q`" in why
    assert "(no check command)" in str(command_refusal(1, [], ["pytest"]))
    assert root_refusal(1, "/srv/p/../p", Path("/srv/p")) is None
    assert "records the root '/'" in str(root_refusal(1, "/", Path("/srv/p")))
    assert digest_refusal(1, "ab" * 32, "ab" * 32) is None
    assert "no approval digest pinned" in str(digest_refusal(1, "ab" * 32, None))
    assert "altered in the database" in str(digest_refusal(1, "ab" * 32, "cd" * 32))
    assert digest_refusal(1, "ab" * 32, "ab" * 32, "ABABABABABAB") is None


#: A check that passes, and kills the process that runs it on the run named in the project's
#: file ``kill_at`` (runs counted in ``runs``): a crash in the middle of an approval.
KILL_ON_RUN = (
    "import os, pathlib, signal; p, k = pathlib.Path('runs'), pathlib.Path('kill_at'); "
    "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
    "os.kill(os.getppid(), signal.SIGKILL) if k.exists() and n == int(k.read_text()) else None; "
    "import mod; assert mod.f(3) == 9"
)
KILLING_CHECK = [sys.executable, "-c", KILL_ON_RUN]


def _approve_in_a_process_killed_at_check(home: Path, project: Path, ident: int, run: int) -> int:
    import subprocess

    code = (
        "import sys\n"
        "from selfimprove.engine import SelfImprovementEngine\n"
        "e = SelfImprovementEngine(home=sys.argv[1], root=sys.argv[2], check_command=sys.argv[3])\n"
        "e.approve_improvement(int(sys.argv[4]))\n"
    )
    check = shlex.join(KILLING_CHECK)
    (project / "kill_at").write_text(str(run))
    done = subprocess.run(
        [sys.executable, "-c", code, str(home), str(project), check, str(ident)], timeout=120
    )
    (project / "kill_at").unlink()
    return done.returncode


def test_an_approval_killed_after_writing_is_undone_before_the_next_one(
    home: Path, project: Path
) -> None:
    mod = project / "mod.py"
    with _engine(home, project, KILLING_CHECK) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
    # run 1 is the check before the change, run 2 the check after it: killed there
    assert _approve_in_a_process_killed_at_check(home, project, rec.id, 2) == -9
    assert hashlib.sha256(mod.read_bytes()).hexdigest() == rec.sha256_after  # written...
    with _engine(home, project, KILLING_CHECK) as engine:
        assert engine.store.get_code_improvement(rec.id).status is CodeImprovementStatus.PENDING
        # ...never confirmed: the next approval puts the original back first, then applies
        applied = engine.approve_improvement(rec.id)
        assert applied.status is CodeImprovementStatus.APPLIED
        actions = [a.action for a in engine.get_audit_trail(rec.id)]
        assert actions == [
            *("proposed", "writing", "written"),  # the killed approval
            "interrupted",  # found and undone
            *("writing", "written", "applied"),
        ]
        interrupted = engine.get_audit_trail(rec.id)[3]
        assert "has ended" in interrupted.details["reason"]
        assert "original bytes written back" in interrupted.details["done"]
    assert hashlib.sha256(mod.read_bytes()).hexdigest() == rec.sha256_after


def test_a_rejection_after_an_interrupted_approval_gives_the_original_bytes_back(
    home: Path, project: Path
) -> None:
    mod = project / "mod.py"
    with _engine(home, project, KILLING_CHECK) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
    assert _approve_in_a_process_killed_at_check(home, project, rec.id, 2) == -9
    with _engine(home, project, KILLING_CHECK) as engine:
        rejected = engine.reject_improvement(rec.id, reason="not after a crash")
        assert rejected.status is CodeImprovementStatus.REJECTED
    assert mod.read_bytes() == SLOW_MODULE


def test_a_write_announced_by_a_live_process_is_not_touched(home: Path, project: Path) -> None:
    from selfimprove.engine._recovery import announce

    with _engine(home, project, KILLING_CHECK) as engine:
        rec = engine.apply_improvement("multiply", "mod.py", "f", FAST_F)
        announce(engine.store, rec, project / "mod.py", "bob", "writing")  # this process: alive
        with pytest.raises(CodePatchError, match="is being approved by another process now"):
            engine.approve_improvement(rec.id)
    assert (project / "mod.py").read_bytes() == SLOW_MODULE


def test_a_rollback_cut_short_after_writing_is_finished_by_the_next_one(
    home: Path, project: Path, check_argv: list[str]
) -> None:
    import socket

    mod = project / "mod.py"
    with _engine(home, project, check_argv) as engine:
        rec = engine.approve_improvement(
            engine.apply_improvement("multiply", "mod.py", "f", FAST_F).id
        )
        # A rollback that announced itself, wrote the original bytes and died (its process,
        # a pid that never ran at that start time, has ended) before the ledger said so.
        dead = f"{socket.gethostname()}:{2**22 - 1}:1"
        engine.store.add_audit(
            "rolling_back",
            "bob",
            improvement_id=rec.id,
            file_path=str(mod),
            details={"owner": dead},
        )
        mod.write_bytes(SLOW_MODULE)
        back = engine.rollback_improvement(rec.id)
        assert back.status is CodeImprovementStatus.ROLLED_BACK
        assert "crash" in back.reason
        last = engine.get_audit_trail(rec.id)[-1]
        assert last.action == "interrupted" and "rollback finished" in last.details["done"]
    assert mod.read_bytes() == SLOW_MODULE
