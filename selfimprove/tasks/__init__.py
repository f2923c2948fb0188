"""Tasks: what models are for. Built-in ones by name, user ones by registration or import path.

A task is found by :func:`resolve_task` in this order: the built-in table, tasks registered in
this process with :func:`register_task`, then an import path ``"package.module:attr"`` where
``attr`` is a :class:`Task` or a zero-argument callable returning one (so a task of your own
also works from the CLI, in a new process).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from selfimprove.errors import NotFoundError, TaskError
from selfimprove.tasks._base import (
    SPLITS,
    DataSplits,
    Split,
    SupervisedTask,
    Task,
    latency_objective,
    size_objective,
    split_arrays,
)
from selfimprove.tasks._device import device_of, on_device
from selfimprove.tasks._infer import (
    MAX_INFERRED_WIDTH,
    SPACE_FROM_TASK,
    effective_search_space,
    infer_search_space,
)
from selfimprove.tasks._mlp import ACTIVATIONS, build_mlp
from selfimprove.tasks._space import (
    MLP_SPACE,
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    point_in,
)
from selfimprove.tasks.builtin import neural_sort, pattern_recognition

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_TASKS",
    "EXTERNAL_TASK_PREFIX",
    "MAX_INFERRED_WIDTH",
    "MLP_SPACE",
    "SPACE_FROM_TASK",
    "SPLITS",
    "CategoricalParam",
    "DataSplits",
    "FloatParam",
    "IntParam",
    "Param",
    "SearchSpace",
    "Split",
    "SupervisedTask",
    "Task",
    "build_mlp",
    "device_of",
    "effective_search_space",
    "infer_search_space",
    "is_external",
    "latency_objective",
    "on_device",
    "point_in",
    "register_task",
    "resolve_task",
    "size_objective",
    "split_arrays",
]


def _import_task(path: str) -> Task:
    """The task at ``"package.module:attr"`` (a :class:`Task` or a zero-argument callable).

    Raises:
        NotFoundError: Nothing importable at ``path``.
        TaskError: What is there does not give a Task.
    """
    module_name, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise NotFoundError(f"cannot import task {path!r}: {exc}") from None
    task = obj() if callable(obj) and not isinstance(obj, Task) else obj
    if not isinstance(task, Task):
        raise TaskError(f"{path!r} does not give a Task (got {type(task).__name__}).")
    return task


def _imported(path: str) -> Callable[[], Task]:
    """A task factory found by import path when first called.

    The neural alternatives' tasks live with the alternatives, a layer above this one (they are
    built from the hormone and trigger systems); naming them here by path keeps them built-in
    without this package importing upward.
    """
    return lambda: _import_task(path)


BUILTIN_TASKS: dict[str, Callable[[], Task]] = {
    "pattern_recognition": pattern_recognition,
    "neural_sort": neural_sort,
    **{
        name: _imported(f"selfimprove.alternatives.builtin:{name}")
        for name in ("hormone_response", "trigger_activation", "memory_consolidation")
    },
}

#: Task names under this prefix belong to models another system records in the ledger (a
#: plasticity run's GPT-2): their history is kept and reported, but the improvement loop neither
#: loads nor plans for them (their checkpoints are that system's folders).
EXTERNAL_TASK_PREFIX = "external:"


def is_external(task_name: str) -> bool:
    """Whether a model of this task is recorded by another system (see ``EXTERNAL_TASK_PREFIX``)."""
    return task_name.startswith(EXTERNAL_TASK_PREFIX)


_registered: dict[str, Task] = {}
_cache: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` resolvable by its name in this process; returns it."""
    if not isinstance(task, Task):
        raise TaskError(f"register_task needs a Task, but got {type(task).__name__}.")
    if task.name in BUILTIN_TASKS:
        raise TaskError(f"{task.name!r} is a built-in task name; give your task another name.")
    _registered[task.name] = task
    return task


def resolve_task(name: str) -> Task:
    """The task called ``name`` (built-in, registered, or ``"module:attr"``).

    Raises:
        NotFoundError: Nothing of that name can be found.
    """
    if name in _registered:
        return _registered[name]
    if name in _cache:
        return _cache[name]
    if name in BUILTIN_TASKS:
        task = BUILTIN_TASKS[name]()
    elif ":" in name:
        task = _import_task(name)
    else:
        raise NotFoundError(
            f"unknown task {name!r}; built-in tasks are {sorted(BUILTIN_TASKS)}. Register your "
            "own with selfimprove.register_task(task) or refer to it as 'package.module:attr'."
        )
    _cache[name] = task
    return task
