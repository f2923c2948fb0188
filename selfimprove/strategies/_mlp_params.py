"""MLP candidates as params the task can rebuild: the architecture keys of a ``build_mlp``-shaped
model, and the check that the task rebuilds a reshaped MLP (pruned or grown) from ``widths``."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from selfimprove.errors import TaskError
from selfimprove.nn.mlp import MLPStructure
from selfimprove.nn.modules import build_module
from selfimprove.registry import LoadedModel
from selfimprove.seeding import torch_seeded
from selfimprove.strategies._base import StrategyContext

__all__ = ["ARCH_KEYS", "new_params", "rebuild_problem", "state_shapes"]

#: Architecture keys replaced by the reshaped ones in a candidate's params.
ARCH_KEYS = ("width", "depth", "widths", "activation", "dropout")


def new_params(old: Mapping[str, Any], mlp: MLPStructure, widths: Sequence[int]) -> dict[str, Any]:
    """The incumbent's params with its architecture keys replaced by ``widths`` params."""
    kept = {k: v for k, v in old.items() if k not in ARCH_KEYS}
    return {**kept, **mlp.params(widths)}


def state_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state entry's shape (what a checkpoint of ``module`` must fit)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def rebuild_problem(
    incumbent: LoadedModel,
    context: StrategyContext,
    mlp: MLPStructure,
    target: Sequence[int],
    surgery: nn.Module,
) -> str | None:
    """Why the task cannot rebuild the reshaped (pruned or grown) model from ``widths``
    params, or ``None``.

    Two checks through ``task.build``: the incumbent's own widths as a ``widths`` list must
    rebuild a module that, filled with the incumbent's weights, gives the same outputs; and
    the ``target`` widths must rebuild the exact state-dict shapes of ``surgery``, the
    reshaped module.
    """
    task, module = context.task, incumbent.module
    now = new_params(incumbent.version.params, mlp, mlp.widths)
    then = new_params(incumbent.version.params, mlp, target)
    try:
        with torch_seeded(context.seed):  # builders initialise from the global RNG
            same, smaller = build_module(task, now), build_module(task, then)
    except (TaskError, KeyError, TypeError, ValueError) as exc:
        return f"task {task.name!r} cannot build uneven widths from params {then}: {exc}"
    if state_shapes(same) != state_shapes(module):
        return (
            f"task {task.name!r} does not rebuild this model from params {now} (state-dict "
            "shapes differ), so a pruned version could not be reloaded"
        )
    if state_shapes(smaller) != state_shapes(surgery):
        return (
            f"task {task.name!r} cannot express uneven widths: params {then} build other "
            "shapes than the pruned model has"
        )
    probe = task.splits().train.x[:8]  # (8, in_features) training inputs only
    same.load_state_dict(module.state_dict())
    reference = copy.deepcopy(module).eval()  # eval on a copy: the incumbent stays as is
    with torch.no_grad():
        agree = torch.allclose(same.eval()(probe), reference(probe), rtol=1e-5, atol=1e-6)
    if not agree:
        return (
            f"task {task.name!r} rebuilds params {now} with other behaviour than the model "
            "(activation or dropout not honoured)"
        )
    return None
