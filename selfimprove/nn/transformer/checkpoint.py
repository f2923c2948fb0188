"""Checkpoints with uneven heads (GPT-2, Llama): safetensors + a JSON manifest with the sha256.

The manifest holds :func:`model_spec` (config and heads per layer), so the architecture is
rebuilt from data alone; the weights are plain tensors in safetensors (never pickle), written
atomically, and checked against the recorded sha256 before anything is parsed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfimprove.checkpoints import (
    atomic_write,
    atomic_write_json,
    read_verified,
    sha256_hex,
    state_from_bytes,
)
from selfimprove.errors import CheckpointError
from selfimprove.nn.modules import state_to_bytes
from selfimprove.nn.transformer.surgery import build_model, model_spec
from selfimprove.store import clean_json

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["FORMAT", "SavedModel", "load_model", "read_manifest", "save_model"]

FORMAT = "selfimprove-plasticity-model/1"


@dataclass(frozen=True)
class SavedModel:
    """Where a checkpoint lies and its digest.

    Attributes:
        weights: The ``.safetensors`` file.
        manifest: The ``.json`` manifest beside it.
        sha256: Digest of the weights file.
    """

    weights: Path
    manifest: Path
    sha256: str


def save_model(
    model: GPT2LMHeadModel, path: Path, *, extra: Mapping[str, Any] | None = None
) -> SavedModel:
    """Write ``<path>.safetensors`` and ``<path>.json`` atomically.

    Args:
        model: The model.
        path: Path without suffix.
        extra: More manifest fields (metrics, lineage).

    Returns:
        The files and the weights' sha256.
    """
    data = state_to_bytes(model)
    sha = sha256_hex(data)
    weights, manifest = path.with_suffix(".safetensors"), path.with_suffix(".json")
    atomic_write(weights, data)
    atomic_write_json(
        manifest,
        clean_json(
            {
                "format": FORMAT,
                "spec": model_spec(model),
                "sha256": sha,
                "size_bytes": len(data),
                **dict(extra or {}),
            }
        ),
    )
    return SavedModel(weights, manifest, sha)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of checkpoint ``path`` (without suffix, or the ``.json`` itself).

    Raises:
        CheckpointError: Missing or unreadable manifest.
    """
    manifest = path.with_suffix(".json")
    try:
        data: dict[str, Any] = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint manifest {manifest} is missing.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint manifest {manifest} is unreadable: {exc}") from None
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"{manifest} is not a plasticity checkpoint (format {data.get('format')!r})."
        )
    return data


def load_model(path: Path) -> GPT2LMHeadModel:
    """Rebuild and fill the model of checkpoint ``path`` after checking its sha256.

    Raises:
        CheckpointError: Missing, altered or mismatched files.
    """
    manifest = read_manifest(path)
    data = read_verified(path.with_suffix(".safetensors"), manifest["sha256"], what=str(path))
    state = state_from_bytes(data, source=str(path))
    model = build_model(manifest["spec"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit its manifest: {str(exc).splitlines()[0]}"
        ) from None
    model.eval()
    return model
