"""Approvals and rollbacks a crash cut short, found and finished before the next one.

Approval writes a file between two ledger updates, and so does rollback: a process killed in
between leaves a file that the ledger does not describe (a ``pending`` improvement whose file
already holds the change, or an ``applied`` one whose file is back to the original). So each
write is announced first, in the audit trail (``writing`` / ``rolling_back``, with the process
as ``owner``), and the next approval, rejection or rollback of that improvement looks for an
announcement nothing ended (:func:`selfimprove.engine._approval.unfinished`):

- its process still runs (same host, same pid and start time): refused, it is busy;
- an approval cut short: its change was never confirmed by the after-check, so the original
  bytes are written back (hash verified) when the file holds the change; the improvement stays
  ``pending``, as proposed;
- a rollback cut short after writing: the file already holds the original bytes, so the
  rollback is finished in the ledger (``rolled_back``); cut short before writing: nothing to do.

Each recovery is one ``interrupted`` audit entry naming the dead process and what was done.
"""

from __future__ import annotations

import logging
from pathlib import Path

from selfimprove.engine._approval import unfinished
from selfimprove.engine.codepatch import atomic_write, digests
from selfimprove.errors import CodePatchError
from selfimprove.store import (
    CodeImprovementRecord,
    CodeImprovementStatus,
    Store,
    liveness,
    process_owner,
    utcnow,
)

__all__ = ["announce", "recover_interrupted"]

logger = logging.getLogger(__name__)

#: The announcement a write of each status makes.
_INTENT = {CodeImprovementStatus.PENDING: "writing", CodeImprovementStatus.APPLIED: "rolling_back"}


def announce(store: Store, rec: CodeImprovementRecord, path: Path, who: str, intent: str) -> None:
    """Record that this process is about to write ``path`` for ``rec`` (``intent``:
    ``writing`` an approved change, or ``rolling_back``)."""
    store.add_audit(
        intent,
        who,
        improvement_id=rec.id,
        file_path=str(path),
        sha256_before=rec.sha256_before,
        sha256_after=rec.sha256_after,
        details={"owner": process_owner()},
    )


def recover_interrupted(
    store: Store, rec: CodeImprovementRecord, path: Path, who: str
) -> CodeImprovementRecord:
    """Finish what a crash cut short for ``rec`` (see the module docstring); returns the
    improvement as it stands afterwards (unchanged when nothing was cut short).

    Raises:
        CodePatchError: Another process that still runs is writing it now, or restoring the
            original bytes did not give them back.
    """
    intent = _INTENT.get(rec.status)
    entry = unfinished(store.list_audit(rec.id), intent) if intent else None
    if entry is None:
        return rec
    owner = entry.details.get("owner")
    verdict = liveness(owner if isinstance(owner, str) else None, None, utcnow())
    if verdict.alive:
        doing = "approved" if intent == "writing" else "rolled back"
        raise CodePatchError(
            f"code improvement {rec.id} is being {doing} by another process now "
            f"({verdict.reason}); wait for it to finish."
        )
    current = digests(path.read_bytes()).sha256 if path.is_file() else None
    out, done = rec, "nothing had been written"
    if intent == "writing" and current == rec.sha256_after:
        atomic_write(path, rec.original_content)
        if digests(path.read_bytes()).sha256 != rec.sha256_before:
            raise CodePatchError(
                f"{path}: writing back the original bytes after an interrupted approval of "
                f"improvement {rec.id} did not give them back; restore its original_content "
                "by hand."
            )
        done = "the change was never confirmed by its check: the original bytes written back"
    elif intent == "rolling_back" and current == rec.sha256_before:
        out = store.update_code_improvement(
            rec.id,
            status=CodeImprovementStatus.ROLLED_BACK,
            reason="rollback finished after a crash cut it short",
            rolled_back_at=utcnow(),
        )
        done = "the original bytes were already back: rollback finished"
    store.add_audit(
        "interrupted",
        who,
        improvement_id=rec.id,
        file_path=str(path),
        sha256_before=current,
        sha256_after=digests(path.read_bytes()).sha256 if path.is_file() else None,
        details={"intent": intent, "owner": owner, "reason": verdict.reason, "done": done},
    )
    logger.warning("code improvement %d: %s cut short (%s); %s", rec.id, intent, verdict, done)
    return out
