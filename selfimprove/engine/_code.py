"""Code improvements under approval: the engine's ledger around :mod:`selfimprove.engine.codepatch`.

A proposal records the file's exact bytes before and after (SHA-256 and MD5), pins an approval
digest over exactly what approval would do (:mod:`selfimprove.engine._approval`) and leaves the
file alone. Approval (or ``auto_improve``) refuses a proposal whose stored command or root is
not the engine's configured one, or whose row no longer matches its digest; then it checks that
the file still holds the recorded bytes, runs the *configured* check command in the
*configured* root, writes the change in one rename, runs the check again and either keeps it or
writes the original bytes back and rejects it. Rollback restores the exact bytes, and is refused
when someone has edited the file since. Every step is in the audit trail: who (the OS user or
an ``actor``), when, what, the hashes, the command that ran, its result (``check_result``:
passed, exit status, pytest's counts, the output's tail) and the digest approved.

Where no check command is configured and the root has tests, the check is pytest
(:func:`~selfimprove.engine.codepatch.default_check`), pinned at proposal like any command.
Where the root lies in a git work tree (:mod:`selfimprove.engine._git`), approval first refuses
a file that is untracked or has uncommitted changes, a kept change is committed (that file
only; the commit's id in the ``applied`` entry's ``git``), and a rollback commits the restored
file as the revert of that commit. Elsewhere files are only written, as before.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from selfimprove.config import MAX_IMPROVEMENT_NAME
from selfimprove.engine._actors import Actor
from selfimprove.engine._approval import (
    DIGEST_KEY,
    ApprovalPlan,
    approval_digest,
    command_refusal,
    contents_refusal,
    digest_refusal,
    pinned_digest,
    record_digest,
    root_refusal,
    unfinished,
    unified_diff,
)
from selfimprove.engine._git import (
    GitRepo,
    approved_commit,
    change_message,
    revert_message,
    work_tree,
)
from selfimprove.engine._recovery import announce, recover_interrupted
from selfimprove.engine.codepatch import (
    CommandResult,
    FileDigests,
    atomic_write,
    confine,
    default_check,
    digests,
    replace_function,
    run_command,
)
from selfimprove.errors import CodePatchError, ConfigError
from selfimprove.objectives import Direction
from selfimprove.store import (
    AuditRecord,
    CodeImprovementRecord,
    CodeImprovementStatus,
    ImprovementMeasurementRecord,
    Store,
    utcnow,
)

__all__ = ["CheckSettings", "CodeImprovements", "change_verdict", "check_brief", "check_summary"]

logger = logging.getLogger(__name__)

#: :meth:`Experiments.measure_improvement`, which measures a check's numbers before and after.
Measure = Callable[..., ImprovementMeasurementRecord]


def _failure(last: CommandResult) -> str:
    return f"exit {last.returncode}{', timed out' if last.timed_out else ''}"


def check_summary(runs: Sequence[CommandResult]) -> dict[str, Any]:
    """What the check runs say, as stored with the improvement (``ran: False`` for none)."""
    if not runs:
        return {"ran": False}
    values = [r.value for r in runs if r.value is not None]
    return {
        "ran": True,
        "passed": all(r.passed for r in runs),
        "runs": [r.to_dict() for r in runs],
        "values": values,
    }


#: Characters of a check's output kept in the audit trail (the improvement keeps more).
AUDIT_TAIL_CHARS = 400


def check_brief(runs: Sequence[CommandResult]) -> dict[str, Any]:
    """The audit trail's short form of a check: its last run's verdict, exit status, test
    counts (pytest) and output tail (``ran: False`` for none; :func:`check_summary` keeps
    every run, with the improvement)."""
    if not runs:
        return {"ran": False}
    last = runs[-1]
    return {
        "ran": True,
        "passed": all(r.passed for r in runs),
        "runs": len(runs),
        "returncode": last.returncode,
        "timed_out": last.timed_out,
        "tests": last.tests,
        "duration_s": round(last.duration_s, 3),
        "tail": last.output_tail[-AUDIT_TAIL_CHARS:],
    }


def change_verdict(
    written: FileDigests, expected_sha256: str, after_runs: Sequence[CommandResult]
) -> tuple[bool, str]:
    """Keep a written change or restore the file, and why.

    A change is kept when the file reads back as the patched bytes and the check (if any)
    passes after it.
    """
    if written.sha256 != expected_sha256:
        return False, "the file read back does not match the patched bytes"
    if after_runs and not after_runs[-1].passed:
        last = after_runs[-1]
        return False, (
            f"the check command failed after the change ({_failure(last)}): "
            f"{last.output_tail[-300:].strip()}"
        )
    return True, "the file reads back as patched" + (" and the check passes" if after_runs else "")


class CheckSettings:
    """The check command run before and after a change, in ``root`` (settable).

    Attributes:
        root: The only folder code improvements may change.
        configured: The check's argv as configured (empty: none configured).
        timeout_s: Seconds before the check is killed and counts as failed.
        repeats: Runs of the check before and after.
        direction: Whether the check's number is better lower or higher.
        pytest_default: Where no command is configured and the root has tests, run pytest
            (:func:`~selfimprove.engine.codepatch.default_check`).
    """

    def __init__(
        self,
        root: Path,
        command: list[str],
        timeout_s: float,
        repeats: int,
        direction: Direction,
        *,
        pytest_default: bool = True,
    ) -> None:
        self.root = root
        self.configured = list(command)
        self.timeout_s = timeout_s
        self.repeats = repeats
        self.direction = direction
        self.pytest_default = pytest_default

    @property
    def command(self) -> list[str]:
        """The check's argv that runs: the configured one; where none is configured, pytest
        when the root has tests (``pytest_default``); else empty (no check). It is what a
        proposal records and pins in its digest, and what approval compares it with."""
        if self.configured or not self.pytest_default:
            return list(self.configured)
        return default_check(self.root)

    @command.setter
    def command(self, value: list[str]) -> None:
        self.configured = list(value)


class CodeImprovements:
    """Code improvements: proposal, approval, the check command, rollback, the audit trail.

    Args:
        store: The one store.
        check: Root and check command.
        actor: Who acts when a call names nobody.
        measure: Measures the check's numbers before and after a change.
        auto_improve: Apply proposals at once (still checked, still audited).
    """

    def __init__(
        self,
        store: Store,
        check: CheckSettings,
        actor: Actor,
        measure: Measure,
        *,
        auto_improve: bool = False,
    ) -> None:
        self.store = store
        self.check = check
        self.actor = actor
        self.measure = measure
        self.auto_improve = auto_improve

    def apply_improvement(
        self,
        name: str,
        file_path: str | os.PathLike[str],
        function_name: str,
        new_code: str,
        experiment_id: int | None = None,
        *,
        actor: str | None = None,
    ) -> CodeImprovementRecord:
        """Propose replacing one function of a file; apply it at once with ``auto_improve``.

        The file must lie under ``root``; the new code must parse and define that function;
        every other byte of the file stays as it is. The exact bytes before and after and their
        SHA-256 and MD5 are recorded. Without ``auto_improve`` the file is left untouched until
        :meth:`approve_improvement`.

        Args:
            name: What the change is, in a few words.
            file_path: The source file (relative paths are taken from ``root``).
            function_name: ``function`` or ``Class.method``.
            new_code: The new definition of that function.
            experiment_id: The experiment that motivated it.
            actor: Who proposes it (default: the engine's actor or the OS user).

        Returns:
            The improvement: ``pending``, or with ``auto_improve`` ``applied`` / ``rejected``.

        Raises:
            ConfigError: An empty name, or one over ``MAX_IMPROVEMENT_NAME`` characters.
            CodePatchError: Outside the root, not parseable, no such function, no change.
            NotFoundError: Unknown experiment.
        """
        if not name.strip() or len(name) > MAX_IMPROVEMENT_NAME:
            raise ConfigError(
                f"an improvement's name must be 1 to {MAX_IMPROVEMENT_NAME} characters, but got "
                f"{len(name)}; say what the change is in a few words."
            )
        who = self.actor(actor)
        if experiment_id is not None:
            self.store.get_experiment(experiment_id)
        path = confine(file_path, self.check.root)
        original = path.read_bytes()
        patch = replace_function(original, function_name, new_code, filename=str(path))
        if patch.patched == original:
            raise CodePatchError(
                f"the new code for {patch.qualname} is identical to the current one; "
                "nothing to change."
            )
        before, after = digests(original), digests(patch.patched)
        command = self.check.command  # once: the default (pytest or none) reads the root
        digest = approval_digest(
            file_path=str(path),
            root=str(self.check.root),
            function_name=patch.qualname,
            new_code=patch.new_code,
            original=original,
            patched=patch.patched,
            command=command,
        )
        rec = self.store.add_code_improvement(
            name=name,
            file_path=str(path),
            root=str(self.check.root),
            function_name=patch.qualname,
            experiment_id=experiment_id,
            new_code=patch.new_code,
            original_content=original,
            patched_content=patch.patched,
            sha256_before=before.sha256,
            sha256_after=after.sha256,
            md5_before=before.md5,
            md5_after=after.md5,
            check_command=command,
            requested_by=who,
        )
        self.store.add_audit(
            "proposed",
            who,
            improvement_id=rec.id,
            file_path=str(path),
            sha256_before=before.sha256,
            sha256_after=after.sha256,
            details={
                "name": name,
                "function": patch.qualname,
                "lines": [patch.start_line, patch.end_line],
                "experiment_id": experiment_id,
                "md5_before": before.md5,
                "md5_after": after.md5,
                "command": list(command),
                "root": str(self.check.root),
                DIGEST_KEY: digest,
            },
        )
        logger.info("code improvement %d proposed: %s in %s", rec.id, patch.qualname, path)
        if self.auto_improve:
            return self._apply(rec, f"{who} (auto_improve)")
        return rec

    def _pending(self, improvement_id: int, verb: str) -> CodeImprovementRecord:
        rec = self.store.get_code_improvement(improvement_id)
        if rec.status is not CodeImprovementStatus.PENDING:
            hint = (
                " (roll it back with rollback_improvement)"
                if rec.status is CodeImprovementStatus.APPLIED
                else ""
            )
            raise CodePatchError(
                f"code improvement {improvement_id} is {rec.status.value}; only a pending one "
                f"can be {verb}{hint}."
            )
        return rec

    def plan_approval(
        self, improvement_id: int, expected_digest: str | None = None
    ) -> ApprovalPlan:
        """What approving a pending improvement will do, every check passed; nothing runs.

        Args:
            improvement_id: A pending improvement.
            expected_digest: The digest the approver was shown (at least 12 hex digits).

        Returns:
            The file, function, configured root and command, digest and diff.

        Raises:
            NotFoundError: Unknown improvement.
            CodePatchError: Why approving it is refused (see :meth:`approve_improvement`).
        """
        return self._plan(self._pending(improvement_id, "approved"), expected_digest)

    def approve_improvement(
        self,
        improvement_id: int,
        actor: str | None = None,
        *,
        expected_digest: str | None = None,
    ) -> CodeImprovementRecord:
        """Approve a pending code improvement: check, write, check again, keep or restore.

        Nothing that runs comes from the ledger: the stored check command must equal the
        engine's configured one and the stored root the configured root, and the row must still
        match the approval digest pinned at proposal (and ``expected_digest`` when given), or
        the approval is refused before anything runs. The file must still hold exactly the
        bytes it had when the change was proposed. The configured check command must pass
        before the change; after the change it must pass again, or the original bytes are
        written back (hash verified) and the improvement is rejected automatically. When the
        check prints a number, its runs before and after are compared
        (:meth:`measure_improvement`) and the effect is stored with the improvement.

        In a git work tree the file must also be tracked and hold no uncommitted change (in
        the work tree or staged) before anything runs; a kept change is then committed, that
        file only, with the improvement id, the audit id of the write and the measured gain in
        the message. A commit git refuses rejects the change like a failing check: the
        original bytes are written back.

        Args:
            improvement_id: A pending improvement.
            actor: Who approves (default: the engine's actor or the OS user).
            expected_digest: The digest the approver was shown (see :meth:`plan_approval`).

        Returns:
            The improvement, ``applied`` or (check failed) ``rejected``.

        Raises:
            NotFoundError: Unknown improvement.
            CodePatchError: Not pending, another command or root than configured, altered in
                the database, outside the root, the file changed since, untracked or with
                uncommitted changes in git, git missing for a work tree, or the check fails
                before the change; nothing was written.
        """
        rec = self._pending(improvement_id, "approved")
        return self._apply(rec, self.actor(actor), expected_digest)

    def _verified(
        self, rec: CodeImprovementRecord, expected: str | None, *, command: bool
    ) -> tuple[Path, str]:
        """The file of ``rec`` under the configured root and its digest, once the row is what
        was proposed (and, with ``command``, records the configured check command).

        Raises:
            CodePatchError: The reason it is refused; nothing ran.
        """
        refusal = (
            command_refusal(rec.id, rec.check_command, self.check.command) if command else None
        ) or root_refusal(rec.id, rec.root, self.check.root)
        if refusal:
            raise CodePatchError(refusal)
        path = confine(rec.file_path, self.check.root)
        digest = record_digest(rec)
        pinned = pinned_digest(self.store.list_audit(rec.id))
        refusal = contents_refusal(rec) or digest_refusal(rec.id, digest, pinned, expected)
        if refusal:
            raise CodePatchError(refusal)
        return path, digest

    def _plan(self, rec: CodeImprovementRecord, expected: str | None) -> ApprovalPlan:
        path, digest = self._verified(rec, expected, command=True)
        return ApprovalPlan(
            improvement_id=rec.id,
            name=rec.name,
            file_path=path,
            function_name=rec.function_name,
            root=self.check.root,
            command=tuple(self.check.command),
            digest=digest,
            diff=unified_diff(rec),
            work_tree=repo.top if (repo := work_tree(self.check.root)) is not None else None,
        )

    def _checks(self, argv: list[str], when: str) -> list[CommandResult]:
        runs = []
        for _ in range(self.check.repeats):
            result = run_command(argv, self.check.root, timeout_s=self.check.timeout_s)
            runs.append(result)
            if not result.passed:
                break
        logger.info("check %s the change: %d run(s)", when, len(runs))
        return runs

    def _apply(
        self, rec: CodeImprovementRecord, who: str, expected: str | None = None
    ) -> CodeImprovementRecord:
        """Check, write, check again; keep the change (committed, in a git work tree) or
        restore the file and reject it."""
        plan = self._plan(rec, expected)
        rec = recover_interrupted(self.store, rec, plan.file_path, who)
        path = self._unchanged(rec, plan.file_path)
        repo = self._clean_repo(rec, path, "written")
        argv = list(plan.command)
        before_runs = self._checks(argv, "before") if argv else []
        if before_runs and not before_runs[-1].passed:
            last = before_runs[-1]
            raise CodePatchError(
                f"the check command fails before the change ({_failure(last)}), so it cannot "
                f"judge improvement {rec.id}; fix the project first. "
                f"Output: {last.output_tail[-300:].strip()!r}"
            )
        written = self._write(rec, path, who)
        after_runs = self._checks(argv, "after") if argv else []
        checks = {
            "check_before": check_summary(before_runs),
            "check_after": check_summary(after_runs),
        }
        now = utcnow()
        keep, why = change_verdict(written, rec.sha256_after, after_runs)
        ran = {
            "command": argv,
            "root": str(plan.root),
            "digest": plan.digest,
            "check_result": {"before": check_brief(before_runs), "after": check_brief(after_runs)},
        }
        if not keep:
            return self._restore(rec, path, who, why, written, now, checks, ran)
        performance = self._effect(rec, path, checks["check_before"], checks["check_after"])
        git: dict[str, Any] = {}
        if repo is not None:
            try:
                git = self._commit(repo, rec, path, who, performance, after_runs, plan)
            except CodePatchError as exc:  # the change is not kept uncommitted
                why = f"{exc}; nothing was committed"
                return self._restore(rec, path, who, why, written, now, checks, ran, "git")
        out = self.store.update_code_improvement(
            rec.id,
            status=CodeImprovementStatus.APPLIED,
            reason=f"approved by {who}",
            decided_by=who,
            decided_at=now,
            applied_at=now,
            performance=performance,
            **checks,
        )
        self.store.add_audit(
            "applied",
            who,
            improvement_id=rec.id,
            file_path=str(path),
            sha256_before=rec.sha256_before,
            sha256_after=written.sha256,
            details={
                "check": bool(argv),
                **ran,
                "performance": performance,
                **({"git": git} if git else {}),
            },
        )
        logger.info("code improvement %d applied to %s by %s", rec.id, path, who)
        self.store.add_event(
            "code_improvement_applied",
            f"{rec.name}: {rec.function_name} in {path}",
            payload={"improvement_id": rec.id, "performance": performance},
        )
        return out

    def _unchanged(self, rec: CodeImprovementRecord, path: Path) -> Path:
        """``path``, the file of ``rec``, which must still hold the bytes it had when proposed.

        Raises:
            CodePatchError: Changed since; nothing was written.
        """
        current = digests(path.read_bytes())
        if current.sha256 != rec.sha256_before:
            raise CodePatchError(
                f"{path} has changed since improvement {rec.id} was proposed (sha256 "
                f"{current.sha256[:12]}…, expected {rec.sha256_before[:12]}…); nothing was "
                "written: reject it and propose the change again on the current file."
            )
        return path

    def _clean_repo(self, rec: CodeImprovementRecord, path: Path, verb: str) -> GitRepo | None:
        """The git work tree the root lies in (``None``: none), once ``path`` is tracked there
        and has no uncommitted changes.

        Raises:
            CodePatchError: Why it is refused; nothing ran and nothing was written.
        """
        repo = work_tree(self.check.root)
        refusal = repo.unclean_refusal(path, rec.id, verb) if repo is not None else None
        if refusal:
            raise CodePatchError(refusal)
        return repo

    def _announced(self, rec: CodeImprovementRecord, intent: str) -> int:
        """The id of the audit entry that announced the write under way (``writing`` or
        ``rolling_back``): the commit's ``Audit-Id``."""
        entry = unfinished(self.store.list_audit(rec.id), intent)
        if entry is None:  # announce() wrote it just before; a missing one is a ledger fault
            raise CodePatchError(f"improvement {rec.id}'s {intent!r} audit entry is missing.")
        return entry.id

    def _commit(
        self,
        repo: GitRepo,
        rec: CodeImprovementRecord,
        path: Path,
        who: str,
        performance: dict[str, Any],
        after_runs: Sequence[CommandResult],
        plan: ApprovalPlan,
    ) -> dict[str, Any]:
        """Commit the kept change (its file only); what the audit trail records of it.

        Raises:
            CodePatchError: git refused the commit.
        """
        audit_id = self._announced(rec, "writing")
        check = ""
        if after_runs:
            tests = after_runs[-1].tests
            counts = ", ".join(f"{n} {what}" for what, n in tests.items()) if tests else ""
            check = f"`{plan.command_line}` passed" + (f" ({counts})" if counts else "")
        message = change_message(
            improvement_id=rec.id,
            name=rec.name,
            function_name=rec.function_name,
            file_name=repo.relative(path),
            who=who,
            audit_id=audit_id,
            performance=performance,
            check=check,
            digest=plan.digest,
        )
        sha = repo.commit(path, message)
        return {
            "commit": sha,
            "branch": repo.branch(),
            "work_tree": str(repo.top),
            "audit_id": audit_id,
        }

    def _write(self, rec: CodeImprovementRecord, path: Path, who: str) -> FileDigests:
        """Announce the write, write the patched bytes in one rename, audit it; the digests
        read back."""
        announce(self.store, rec, path, who, "writing")
        atomic_write(path, rec.patched_content)
        written = digests(path.read_bytes())
        self.store.add_audit(
            "written",
            who,
            improvement_id=rec.id,
            file_path=str(path),
            sha256_before=rec.sha256_before,
            sha256_after=written.sha256,
            details={"function": rec.function_name},
        )
        return written

    def _restore(
        self,
        rec: CodeImprovementRecord,
        path: Path,
        who: str,
        why: str,
        written: FileDigests,
        now: datetime,
        checks: dict[str, dict[str, Any]],
        ran: dict[str, Any],
        decided_by: str = "check_command",
    ) -> CodeImprovementRecord:
        """Write the original bytes back (hash verified) and reject the change for ``why``
        (``decided_by``: what refused it, the check command or git).

        Raises:
            CodePatchError: The restored file does not hash as the original.
        """
        atomic_write(path, rec.original_content)
        restored = digests(path.read_bytes())
        if restored.sha256 != rec.sha256_before:
            raise CodePatchError(
                f"{path}: restoring after a failed check left sha256 {restored.sha256[:12]}…,"
                f" not {rec.sha256_before[:12]}…; restore it from improvement {rec.id}'s "
                "original_content by hand."
            )
        out = self.store.update_code_improvement(
            rec.id,
            status=CodeImprovementStatus.REJECTED,
            reason=f"rejected automatically: {why}; the file was restored",
            decided_by=decided_by,
            decided_at=now,
            **checks,
        )
        self.store.add_audit(
            "auto_rejected",
            who,
            improvement_id=rec.id,
            file_path=str(path),
            sha256_before=written.sha256,
            sha256_after=restored.sha256,
            details={"reason": why, "restored": True, **ran},
        )
        logger.warning("code improvement %d rejected: %s", rec.id, why)
        self.store.add_event("code_improvement_rejected", why, payload={"improvement_id": rec.id})
        return out

    def _effect(
        self,
        rec: CodeImprovementRecord,
        path: Path,
        check_before: dict[str, Any],
        check_after: dict[str, Any],
    ) -> dict[str, Any]:
        """The change's measured effect when the check printed numbers before and after."""
        b_vals, a_vals = check_before.get("values", []), check_after.get("values", [])
        if not (b_vals and a_vals):
            return {}
        sampled = len(b_vals) >= 2 and len(a_vals) >= 2
        m = self.measure(
            float(np.median(b_vals)),
            float(np.median(a_vals)),
            f"code:{rec.name}",
            {"file": str(path), "function": rec.function_name},
            before_samples=b_vals if sampled else None,
            after_samples=a_vals if sampled else None,
            direction=self.check.direction,
            experiment_id=rec.experiment_id,
            improvement_id=rec.id,
            test="mann_whitney",  # a check's number is usually a timing: skewed
        )
        return {
            "metric": m.metric_name,
            "before": m.before_value,
            "after": m.after_value,
            "improvement": m.improvement,
            "p_value": m.p_value,
            "significant": m.significant,
            "confidence": m.confidence,
            "measurement_id": m.id,
        }

    def reject_improvement(
        self, improvement_id: int, reason: str = "", actor: str | None = None
    ) -> CodeImprovementRecord:
        """Reject a pending code improvement (its file was never touched).

        Raises:
            NotFoundError: Unknown improvement.
            CodePatchError: Not pending (an applied one is undone with rollback).
        """
        rec = self._pending(improvement_id, "rejected")
        who = self.actor(actor)
        if unfinished(self.store.list_audit(rec.id), "writing") is not None:
            path, _ = self._verified(rec, None, command=False)
            rec = recover_interrupted(self.store, rec, path, who)  # the original bytes back
        out = self.store.update_code_improvement(
            rec.id,
            status=CodeImprovementStatus.REJECTED,
            reason=reason or f"rejected by {who}",
            decided_by=who,
            decided_at=utcnow(),
        )
        self.store.add_audit(
            "rejected",
            who,
            improvement_id=rec.id,
            file_path=rec.file_path,
            sha256_before=rec.sha256_before,
            sha256_after=rec.sha256_before,
            details={"reason": reason},
        )
        return out

    def rollback_improvement(
        self, improvement_id: int, actor: str | None = None, reason: str = ""
    ) -> CodeImprovementRecord:
        """Restore the exact bytes a file had before an applied improvement.

        Refused when the stored root is not the configured root, when the row no longer
        matches the approval digest pinned at proposal (the bytes written back come from it),
        or when the file no longer holds the bytes the improvement wrote (someone edited it
        since): their work is not overwritten. The restored file's SHA-256 is verified.

        When the approval made a commit and the root is still in a git work tree, the file must
        hold no uncommitted change, and the restored file is committed as the revert of that
        commit (git's ``This reverts commit …`` message); if git refuses, the change's bytes are
        written back and the improvement stays applied.

        Raises:
            NotFoundError: Unknown improvement.
            CodePatchError: Not applied, another root, altered in the database, outside the
                root, the file changed since (or uncommitted, in git), or git refused the
                revert commit.
        """
        rec = self.store.get_code_improvement(improvement_id)
        if rec.status is not CodeImprovementStatus.APPLIED:
            raise CodePatchError(
                f"code improvement {improvement_id} is {rec.status.value}; only an applied one "
                "can be rolled back."
            )
        who = self.actor(actor)
        path, _ = self._verified(rec, None, command=False)
        rec = recover_interrupted(self.store, rec, path, who)
        if rec.status is CodeImprovementStatus.ROLLED_BACK:  # a crash cut the last one short
            return rec
        current = digests(path.read_bytes())
        if current.sha256 != rec.sha256_after:
            raise CodePatchError(
                f"{path} has changed since improvement {rec.id} was applied (sha256 "
                f"{current.sha256[:12]}…, expected {rec.sha256_after[:12]}…); it was not "
                "overwritten. Undo the change by hand, or commit the edits and roll back there."
            )
        commit = approved_commit(self.store.list_audit(rec.id))
        repo = self._clean_repo(rec, path, "rolled back") if commit else None
        announce(self.store, rec, path, who, "rolling_back")
        atomic_write(path, rec.original_content)
        restored = digests(path.read_bytes())
        if restored.sha256 != rec.sha256_before:
            raise CodePatchError(
                f"{path}: the restored file's sha256 {restored.sha256[:12]}… is not the "
                f"recorded {rec.sha256_before[:12]}…; check the file system."
            )
        git: dict[str, Any] = {}
        if repo is not None and commit is not None:
            git = self._commit_revert(repo, rec, path, who, commit, reason)
        out = self.store.update_code_improvement(
            rec.id,
            status=CodeImprovementStatus.ROLLED_BACK,
            reason=reason or f"rolled back by {who}",
            rolled_back_at=utcnow(),
        )
        self.store.add_audit(
            "rolled_back",
            who,
            improvement_id=rec.id,
            file_path=str(path),
            sha256_before=current.sha256,
            sha256_after=restored.sha256,
            details={
                "reason": reason,
                "md5_after": restored.md5,
                **({"git": git} if git else {}),
            },
        )
        logger.info("code improvement %d rolled back by %s", rec.id, who)
        self.store.add_event(
            "code_improvement_rolled_back", reason or rec.name, payload={"improvement_id": rec.id}
        )
        return out

    def _commit_revert(
        self,
        repo: GitRepo,
        rec: CodeImprovementRecord,
        path: Path,
        who: str,
        commit: str,
        reason: str,
    ) -> dict[str, Any]:
        """Commit the restored file as the revert of ``commit``; what the audit trail records.
        When git refuses, the change's bytes are written back and the rollback ends undone.

        Raises:
            CodePatchError: git refused the commit; the improvement stays applied.
        """
        audit_id = self._announced(rec, "rolling_back")
        message = revert_message(
            improvement_id=rec.id,
            name=rec.name,
            commit=commit,
            who=who,
            audit_id=audit_id,
            reason=reason,
        )
        try:
            sha = repo.commit(path, message)
        except CodePatchError as exc:
            atomic_write(path, rec.patched_content)
            back = digests(path.read_bytes()).sha256
            done = (
                "the change's bytes were written back"
                if back == rec.sha256_after
                else f"writing the change's bytes back left sha256 {back[:12]}…"
            )
            self.store.add_audit(
                "interrupted",
                who,
                improvement_id=rec.id,
                file_path=str(path),
                sha256_before=rec.sha256_before,
                sha256_after=back,
                details={"intent": "rolling_back", "reason": str(exc), "done": done},
            )
            raise CodePatchError(
                f"{exc}; improvement {rec.id} was not rolled back ({done})."
            ) from None
        return {"commit": sha, "reverts": commit, "work_tree": str(repo.top), "audit_id": audit_id}

    def list_improvements(
        self, status: CodeImprovementStatus | str | None = None
    ) -> list[CodeImprovementRecord]:
        """Code improvements, oldest first (of one status if given)."""
        return self.store.list_code_improvements(
            CodeImprovementStatus(status) if status is not None else None
        )

    def get_audit_trail(self, improvement_id: int | None = None) -> list[AuditRecord]:
        """Every recorded action (on one improvement if given), oldest first."""
        return self.store.list_audit(improvement_id)
