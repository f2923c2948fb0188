"""A version's files against its record: a corrupted checkpoint or an edited manifest shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from selfimprove.loop.improver import SelfImprover
from selfimprove.tasks import resolve_task

TASK = "tests._tasks:wine"


@pytest.fixture
def registered(home: Path) -> Path:
    task = resolve_task(TASK)
    torch.manual_seed(0)
    with SelfImprover(home) as si:
        si.register_model(
            "wine", TASK, task.build({"width": 8, "depth": 1}), {"width": 8, "depth": 1}
        )
    return home


def _files(home: Path) -> tuple[str, str]:
    with SelfImprover(home, read_only=True) as si:
        (row,) = si.models()
    return row["checkpoint"], row["manifest"]


def _version_dir(home: Path) -> Path:
    return home / "models" / "wine" / "v1"


def test_intact_files_are_ok(registered: Path) -> None:
    assert _files(registered) == ("ok", "ok")


def test_a_truncated_checkpoint_is_corrupted_with_both_hashes(registered: Path) -> None:
    ckpt = _version_dir(registered) / "model.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    checkpoint, manifest = _files(registered)
    assert checkpoint.startswith("CORRUPTED (sha256 ") and "≠ recorded" in checkpoint
    assert manifest == "ok"


def test_a_deleted_checkpoint_is_missing(registered: Path) -> None:
    (_version_dir(registered) / "model.safetensors").unlink()
    assert _files(registered) == ("missing", "ok")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"params": {"width": 64, "depth": 1}}, "EDITED (params)"),
        ({"version": 7}, "EDITED (version)"),
        ({"sha256": "0" * 64, "model": "other"}, "EDITED (model, sha256)"),
        ({"created_at": "yesterday", "metrics": {}}, "ok"),  # not checked against the ledger
    ],
)
def test_an_edited_manifest_is_flagged(registered: Path, edit: dict, expected: str) -> None:
    path = _version_dir(registered) / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    assert _files(registered) == ("ok", expected)


@pytest.mark.parametrize(
    ("content", "expected"), [(None, "missing"), ("{not json", "unreadable (JSONDecodeError)")]
)
def test_a_missing_or_garbled_manifest(
    registered: Path, content: str | None, expected: str
) -> None:
    path = _version_dir(registered) / "manifest.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    assert _files(registered) == ("ok", expected)
