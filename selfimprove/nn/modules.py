"""Modules from params and back: the one place that knows how a version's module is rebuilt.

A version's params are the task's architecture params plus, optionally, reserved transform
keys that the task's builder never sees:

- ``"quantization"``: e.g. ``{"scheme": "dynamic_int8", "engine": "torch.ao"}`` (or
  ``"torchao"``); the float
  module is built, then quantized, then filled from the checkpoint.

Structural changes (pruned widths, evolved depth) need no transform: they are ordinary
architecture params (``widths`` for the built-in MLPs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import nn

import selfimprove.nn.quantize as quantize
from selfimprove.checkpoints import tensors_to_bytes
from selfimprove.errors import CheckpointError

__all__ = [
    "TRANSFORM_KEYS",
    "Builder",
    "arch_params",
    "build_module",
    "checkpoint_bytes",
    "load_state_",
    "module_state",
    "state_to_bytes",
]

TRANSFORM_KEYS = ("quantization",)


class Builder(Protocol):
    """Anything that builds a module from architecture params (a ``selfimprove.tasks.Task``)."""

    def build(self, params: Mapping[str, Any]) -> nn.Module: ...


def arch_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params the task's builder understands (transform keys removed)."""
    return {k: v for k, v in params.items() if k not in TRANSFORM_KEYS}


def build_module(task: Builder, params: Mapping[str, Any]) -> nn.Module:
    """An empty module of the right structure for ``params`` (transforms applied)."""
    module = task.build(arch_params(params))
    spec = params.get("quantization")
    if spec:
        module = quantize.quantize_module(module, spec)
    return module


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights as plain, contiguous, unshared CPU tensors (safetensors-ready: a
    checkpoint carries no device)."""
    if quantize.is_quantized(module):
        return quantize.quantized_state(module)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def load_state_(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Fill ``module`` (from :func:`build_module`) with ``state``; a mismatch is a
    :class:`CheckpointError`."""
    try:
        if quantize.is_quantized(module):
            quantize.load_quantized_state_(module, state)
        else:
            module.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint of {what} does not fit its architecture params: {str(exc).splitlines()[0]}"
        ) from None


def state_to_bytes(module: nn.Module) -> bytes:
    """The module's weights as safetensors bytes (quantized layers as plain int8 tensors)."""
    return tensors_to_bytes(module_state(module))


def checkpoint_bytes(module: nn.Module) -> int:
    """Size of the module's checkpoint in bytes, as it would be written."""
    return len(state_to_bytes(module))
