"""Do a version's files still say what the ledger says? Checked for ``status`` and ``models``.

A version is two files beside its record: the checkpoint, whose sha256 the ledger holds, and
``manifest.json``, which repeats the record (model, version number, task, params, sha256). The
checkpoint is read and hashed in full (the built-in models' checkpoints are kilobytes; a GPT-2
one is tens of megabytes, still well under a second); the manifest is compared field by field,
so a hand edit shows up even where the weights are intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfimprove.checkpoints import sha256_hex
from selfimprove.store import ModelRecord, VersionRecord, clean_json

__all__ = ["OK", "FileCheck", "check_version_files"]

OK = "ok"

#: Manifest fields that must equal the record's (``size_bytes`` and ``sha256`` included).
_MANIFEST_FIELDS = ("model", "version", "task", "params", "sha256", "size_bytes")


@dataclass(frozen=True)
class FileCheck:
    """What a version's files look like against its record.

    Attributes:
        checkpoint: ``"ok"``, ``"missing"``, ``"pruned"`` (weights deleted by retention),
            ``"CORRUPTED (sha256 … ≠ recorded …)"`` or ``"unreadable (…)"``.
        manifest: ``"ok"``, ``"missing"``, ``"EDITED (field, …)"`` (fields that differ from
            the record) or ``"unreadable (…)"``.
    """

    checkpoint: str
    manifest: str

    @property
    def ok(self) -> bool:
        """Both files match the record."""
        return self.checkpoint == OK and self.manifest == OK


def check_version_files(home: Path, model: ModelRecord, version: VersionRecord) -> FileCheck:
    """Hash ``version``'s checkpoint and compare its manifest with the record.

    Args:
        home: The home folder the record's paths are relative to.
        model: The version's model.
        version: The version.

    Returns:
        The verdict on each file (never raises for a bad file: that is the answer).
    """
    return FileCheck(_checkpoint(home, version), _manifest(home, model, version))


def _checkpoint(home: Path, version: VersionRecord) -> str:
    if version.checkpoint_path is None:
        return "pruned"
    try:
        data = (home / version.checkpoint_path).read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    actual = sha256_hex(data)
    if actual != version.sha256:
        return f"CORRUPTED (sha256 {actual[:12]}… ≠ recorded {version.sha256[:12]}…)"
    return OK


def _manifest(home: Path, model: ModelRecord, version: VersionRecord) -> str:
    try:
        manifest = json.loads((home / version.manifest_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        return f"unreadable ({getattr(exc, 'strerror', None) or type(exc).__name__})"
    if not isinstance(manifest, dict):
        return "unreadable (not a JSON object)"
    expected: dict[str, Any] = {
        "model": model.name,
        "version": version.number,
        "task": model.task,
        "params": version.params,
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
    }
    differ = [k for k in _MANIFEST_FIELDS if _plain(manifest.get(k)) != _plain(expected[k])]
    return f"EDITED ({', '.join(differ)})" if differ else OK


def _plain(value: Any) -> str:
    """A value in a comparable form: the JSON the registry wrote it as."""
    return json.dumps(clean_json(value), sort_keys=True)
