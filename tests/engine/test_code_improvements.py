"""Code improvements: approval, check command, measured effect, rollback, root, audit trail."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from selfimprove.engine import SelfImprovementEngine
from selfimprove.errors import CodePatchError
from selfimprove.store import CodeImprovementStatus

from .conftest import BROKEN_F, FAST_F, SLOW_MODULE


def _engine(
    home: Path, project: Path, check: list[str], repeats: int = 1, **kw: object
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
        assert [a.action for a in trail] == ["proposed", "written", "applied", "rolled_back"]
        assert [a.actor for a in trail] == ["alice", "bob", "bob", "alice"]
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
        assert actions == ["proposed", "written", "auto_rejected"]
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
