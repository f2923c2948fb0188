"""A plain multilayer perceptron, rebuilt from params alone (the built-in tasks' architecture)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from selfimprove.errors import TaskError
from selfimprove.nn.mlp import ACTIVATIONS

__all__ = ["ACTIVATIONS", "build_mlp"]


def build_mlp(in_features: int, out_features: int, params: Mapping[str, Any]) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units, then a linear head.

    Params: ``width`` (int >= 1), ``depth`` (int >= 0), ``activation`` (one of
    :data:`ACTIVATIONS`), ``dropout`` (float in [0, 1)). A list ``widths`` may replace
    ``width`` × ``depth`` (structured pruning produces uneven widths).
    """
    widths = params.get("widths")
    if widths is None:
        width, depth = int(params.get("width", 64)), int(params.get("depth", 1))
        if width < 1 or depth < 0:
            raise TaskError(f"MLP needs width >= 1 and depth >= 0, but got {width=}, {depth=}.")
        widths = [width] * depth
    widths = [int(w) for w in widths]
    if any(w < 1 for w in widths):
        raise TaskError(f"MLP widths must all be >= 1, but got {widths}.")
    act_name = str(params.get("activation", "relu"))
    if act_name not in ACTIVATIONS:
        raise TaskError(f"unknown activation {act_name!r}; choose one of {sorted(ACTIVATIONS)}.")
    dropout = float(params.get("dropout", 0.0))
    if not 0.0 <= dropout < 1.0:
        raise TaskError(f"dropout must be in [0, 1), but got {dropout=}.")
    layers: list[nn.Module] = []
    prev = in_features
    for w in widths:
        layers += [nn.Linear(prev, w), ACTIVATIONS[act_name]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = w
    layers.append(nn.Linear(prev, out_features))
    return nn.Sequential(*layers)
