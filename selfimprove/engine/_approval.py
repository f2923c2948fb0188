"""What approving a code improvement does, pinned at proposal and checked before anything runs.

Trust model: the ledger (the store) records what was proposed, but nothing that *runs* is taken
from it. Approval runs only the engine's configured check command, in the engine's configured
root, and refuses a proposal whose stored command or root differs from that configuration. At
proposal the engine pins an :func:`approval_digest`, a SHA-256 over exactly what approval would
do (file, root, function, new code, the bytes before and after, the command), in the audit
trail's ``proposed`` entry. Approval and rollback recompute it from the row and refuse when it
differs: a row altered in the database (another command, another root, another file, other
bytes) is refused with the reason, before anything runs or is written.

The digest is tamper *evidence*, not a signature: whoever can write the database can rewrite
both the row and its audit entry. That is why the configured command and root, never the
stored ones, are what runs, and why an approver can pin the digest they were shown
(``expected``): an approval then writes exactly what they read.

Each decision is a pure function that returns the reason for a refusal, or ``None``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from selfimprove.engine.codepatch import digests
from selfimprove.store import AuditRecord, CodeImprovementRecord

__all__ = [
    "DIGEST_KEY",
    "ApprovalPlan",
    "approval_digest",
    "command_line",
    "command_refusal",
    "contents_refusal",
    "digest_refusal",
    "pinned_digest",
    "record_digest",
    "root_refusal",
    "unfinished",
    "unified_diff",
]

#: Audit actions that announce a file write before it happens (``details["owner"]`` names the
#: process), and the actions that end each: an announcement nothing ended is a write a crash
#: may have cut short.
ENDINGS = {
    "writing": ("applied", "auto_rejected", "rejected", "interrupted"),
    "rolling_back": ("rolled_back", "interrupted"),
}

#: The key of the digest in the details of an improvement's ``proposed`` audit entry.
DIGEST_KEY = "approval_sha256"

#: Fewest hex digits of a digest an approver may pass to pin it.
MIN_DIGEST_PREFIX = 12


def approval_digest(
    *,
    file_path: str,
    root: str,
    function_name: str,
    new_code: str,
    original: bytes,
    patched: bytes,
    command: Sequence[str],
) -> str:
    """SHA-256 (hex) over exactly what an approval would do.

    Canonical JSON (sorted keys, ASCII) of the file path, root, function, new code, the SHA-256
    of the bytes before and after, and the check's argv; version 1 of this layout.
    """
    payload = {
        "v": 1,
        "file_path": file_path,
        "root": root,
        "function": function_name,
        "new_code": new_code,
        "sha256_before": hashlib.sha256(original).hexdigest(),
        "sha256_after": hashlib.sha256(patched).hexdigest(),
        "command": [str(a) for a in command],
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def record_digest(rec: CodeImprovementRecord) -> str:
    """:func:`approval_digest` of a stored improvement, from its row as it is now."""
    return approval_digest(
        file_path=rec.file_path,
        root=rec.root,
        function_name=rec.function_name,
        new_code=rec.new_code,
        original=rec.original_content,
        patched=rec.patched_content,
        command=[str(a) for a in rec.check_command],
    )


def pinned_digest(trail: Sequence[AuditRecord]) -> str | None:
    """The digest pinned in an improvement's first ``proposed`` audit entry (``None``: none)."""
    for entry in trail:
        if entry.action == "proposed":
            value = entry.details.get(DIGEST_KEY)
            return value if isinstance(value, str) else None
    return None


def command_line(argv: Sequence[object]) -> str:
    """A check's argv as one shell-quoted line (``(no check command)`` for none)."""
    return shlex.join(str(a) for a in argv) if argv else "(no check command)"


def command_refusal(
    improvement_id: int, stored: Sequence[object], configured: Sequence[str]
) -> str | None:
    """Why the stored check command may not run: it differs from the configured one."""
    if [str(a) for a in stored] == list(configured):
        return None
    return (
        f"improvement {improvement_id} records the check command `{command_line(stored)}`, but "
        f"this engine is configured to run `{command_line(configured)}`; nothing ran. Only the "
        "configured command runs: reject the proposal, or approve it from an engine configured "
        "with that exact command (check_command= or --check-command) if you trust it."
    )


def _real(path: str | Path) -> Path | None:
    """The resolved absolute ``path`` (``None``: relative, or it cannot be resolved)."""
    try:
        return Path(path).resolve() if Path(path).is_absolute() else None
    except (OSError, RuntimeError, ValueError):
        return None


def root_refusal(improvement_id: int, stored: str, configured: Path) -> str | None:
    """Why a stored root is refused: it is not the configured root (both resolved)."""
    real = _real(stored)
    if real is not None and real == _real(configured):
        return None
    return (
        f"improvement {improvement_id} records the root {stored!r}, but this engine's root is "
        f"{str(configured)!r}; nothing ran and nothing was written. Only the configured root is "
        "used: run from that folder (root= or --root) if you trust the proposal."
    )


def contents_refusal(rec: CodeImprovementRecord) -> str | None:
    """Why a row's bytes are refused: they do not hash as its recorded SHA-256 (the file is
    compared with those before it is written, and the bytes are what is written)."""
    for what, data, recorded in (
        ("original", rec.original_content, rec.sha256_before),
        ("patched", rec.patched_content, rec.sha256_after),
    ):
        if digests(data).sha256 != recorded:
            return (
                f"improvement {rec.id}'s stored {what} bytes do not hash as its recorded "
                f"sha256 {recorded[:12]}… (altered in the database); nothing ran and nothing "
                "was written: reject it."
            )
    return None


def digest_refusal(
    improvement_id: int, actual: str, pinned: str | None, expected: str | None = None
) -> str | None:
    """Why a row is refused: no digest was pinned at proposal, the row no longer matches it, or
    it is not the digest the approver was shown (``expected``, a prefix of at least 12 hex)."""
    if pinned is None:
        return (
            f"improvement {improvement_id} has no approval digest pinned at proposal (proposed "
            "by an older selfimprove, or its audit trail was altered); reject it and propose "
            "it again."
        )
    if actual != pinned:
        return (
            f"improvement {improvement_id} was altered in the database since it was proposed "
            f"(digest {actual[:12]}…, pinned {pinned[:12]}…); nothing ran and nothing was "
            "written: reject it."
        )
    if expected is None:
        return None
    wanted = expected.strip().lower()
    if len(wanted) < MIN_DIGEST_PREFIX or not actual.startswith(wanted):
        return (
            f"improvement {improvement_id}'s digest is {actual[:12]}…, not the {expected!r} "
            f"you approved (pass at least {MIN_DIGEST_PREFIX} hex digits of the digest shown "
            "by `selfimprove engine show`); nothing ran."
        )
    return None


def unfinished(trail: Sequence[AuditRecord], intent: str) -> AuditRecord | None:
    """The last ``intent`` entry (``writing`` or ``rolling_back``) of one improvement's audit
    trail, oldest first, that no later entry ended; ``None`` when every write finished."""
    last = None
    for entry in trail:
        if entry.action == intent:
            last = entry
        elif last is not None and entry.action in ENDINGS[intent]:
            last = None
    return last


def unified_diff(rec: CodeImprovementRecord) -> str:
    """The change as a unified diff of the stored bytes before and after (decoded as UTF-8,
    undecodable bytes replaced), the file named relative to its stored root when under it."""
    before = rec.original_content.decode("utf-8", "replace").splitlines(keepends=True)
    after = rec.patched_content.decode("utf-8", "replace").splitlines(keepends=True)
    try:
        name = Path(rec.file_path).relative_to(rec.root).as_posix()
        old, new = f"a/{name}", f"b/{name}"
    except ValueError:
        old = new = rec.file_path
    lines = difflib.unified_diff(before, after, old, new)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass(frozen=True)
class ApprovalPlan:
    """What approving one improvement will do, every check passed.

    Attributes:
        improvement_id: The pending improvement.
        name: What the change is.
        file_path: The file that will be written (inside ``root``).
        function_name: The function replaced.
        root: The configured root the command runs in.
        command: The configured check's argv (empty: no check).
        digest: The approval digest, as pinned at proposal.
        diff: The unified diff that will be written.
        work_tree: The git work tree the change will be committed in (``None``: the root is in
            none, and the file is only written).
    """

    improvement_id: int
    name: str
    file_path: Path
    function_name: str
    root: Path
    command: tuple[str, ...]
    digest: str
    diff: str
    work_tree: Path | None = None

    @property
    def command_line(self) -> str:
        """The check command as one shell-quoted line."""
        return command_line(self.command)
