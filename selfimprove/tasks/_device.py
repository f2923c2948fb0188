"""A task whose data and fresh models live on one torch device.

Strategies, training and evaluation read ``task.splits()`` and build models with
``task.build(params)``; :func:`on_device` gives them a view of the task that answers both on the
run's device, so none of them has to know where it runs. The view is a shallow copy of the task
whose class is a subclass of the task's own (``isinstance`` checks and every attribute still
hold), with four methods changed:

- ``splits()``: the task's splits with inputs and targets moved to the device once (cached);
- ``build(params)``: the task's module, initialised on the CPU (so the same seed gives the same
  initial weights on every device), then moved;
- ``per_example(outputs, targets)``: the task's own, given CPU tensors (a task's metric code may
  call ``.numpy()``);
- ``example_input(batch)``: on the device.

On the CPU every move is a no-op, so results there are bit for bit those of the task itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import TaskError
from selfimprove.tasks._base import DataSplits, Split, Task

__all__ = ["device_of", "on_device"]


# The view's methods: set on a subclass of the task's own class (a mixin base would change the
# instances' layout, and ``__class__`` could not be assigned). ``_task_class`` is that class.


def _splits(self: Any) -> DataSplits:
    if self._device_splits is None:
        base: DataSplits = self._task_class.splits(self)
        dev = self._device
        self._device_splits = DataSplits(
            *(Split(s.x.to(dev), s.y.to(dev)) for s in (base.train, base.validation, base.test))
        )
    return self._device_splits


def _build(self: Any, params: Mapping[str, Any]) -> nn.Module:
    module: nn.Module = self._task_class.build(self, params)
    return module.to(self._device)


def _per_example(self: Any, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
    result: dict[str, np.ndarray] = self._task_class.per_example(self, outputs.cpu(), targets.cpu())
    return result


def _example_input(self: Any, batch: int) -> torch.Tensor:
    x: torch.Tensor = self._task_class.example_input(self, batch)
    return x.to(self._device)


_VIEW_CLASSES: dict[type, type] = {}


def _view_class(cls: type) -> type:
    view = _VIEW_CLASSES.get(cls)
    if view is None:
        methods = {
            "splits": _splits,
            "build": _build,
            "per_example": _per_example,
            "example_input": _example_input,
        }
        view = type(
            cls.__name__, (cls,), {"__module__": cls.__module__, "_task_class": cls, **methods}
        )
        _VIEW_CLASSES[cls] = view
    return view


def device_of(task: Task) -> torch.device:
    """The device of a view made by :func:`on_device` (the CPU for any other task)."""
    return getattr(task, "_device", torch.device("cpu"))


def on_device(task: Task, device: torch.device) -> Task:
    """A view of ``task`` whose data and fresh modules are on ``device`` (see the module doc).

    A view of a view is re-made from the original task. The task itself is not changed.
    """
    own = getattr(type(task), "_task_class", None)
    if own is not None:  # a view already
        if device_of(task) == device:
            return task
        task = copy.copy(task)
        task.__class__ = own
    view = copy.copy(task)
    try:
        view.__class__ = _view_class(type(task))
    except TypeError as exc:  # e.g. a task class with __slots__
        if device.type == "cpu":
            return task  # nothing to move
        raise TaskError(
            f"task {task.name!r} cannot be given a view on {device} ({exc}); "
            "run it with device='cpu'."
        ) from None
    view._device = device  # type: ignore[attr-defined]
    view._device_splits = None  # type: ignore[attr-defined]
    return view
