"""The `Task` contract: what a model is for.

A task owns its data splits (train / validation / test, fixed by ``data_seed`` so that every
version of a model is judged on the same examples), an architecture builder from plain params,
a training loss, and its objectives. The first objective is the *primary* one; the others are
*guards* that a candidate must not regress beyond their tolerance.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import TaskError
from selfimprove.objectives import Direction, Objective
from selfimprove.tasks._space import SearchSpace

__all__ = [
    "SPLITS",
    "DataSplits",
    "Split",
    "SupervisedTask",
    "Task",
    "latency_objective",
    "size_objective",
]

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Inputs and targets of one split (first dimension = examples)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise TaskError(
                f"a split needs as many targets as inputs, but got {len(self.x)} inputs "
                f"and {len(self.y)} targets."
            )
        if len(self.x) == 0:
            raise TaskError("a split must hold at least one example.")

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test splits. Validation decides; test is only reported."""

    train: Split
    validation: Split
    test: Split

    def get(self, name: str) -> Split:
        if name not in SPLITS:
            raise TaskError(f"unknown split {name!r}; use one of {SPLITS}.")
        split: Split = getattr(self, name)
        return split


def latency_objective(tolerance: float = 0.25, min_change_ms: float = 0.05) -> Objective:
    """Median batch-1 latency in milliseconds (a guard by default: at most 25 % slower, or at
    most 0.05 ms slower, whichever allows more)."""
    return Objective(
        "latency_ms", Direction.MINIMIZE, unit="ms", tolerance=tolerance, min_change=min_change_ms
    )


def size_objective(tolerance: float = 0.05, limit_bytes: float | None = None) -> Objective:
    """Checkpoint size in bytes (a guard by default: see :mod:`selfimprove.measure.judge` for when
    its relative tolerance applies and when only ``limit_bytes``, the largest checkpoint
    accepted)."""
    return Objective(
        "size_bytes", Direction.MINIMIZE, unit="bytes", tolerance=tolerance, limit=limit_bytes
    )


class Task(abc.ABC):
    """What a model is for. Subclass it, or use :class:`SupervisedTask` for plain (x, y) data.

    Attributes:
        name: Unique task name (the store records it; built-in names resolve by themselves).
        family: Task family; models of one family can teach each other.
        objectives: Primary objective first, then guards.
        data_seed: Seed of the split; fixed so every version sees the same examples.
    """

    name: str
    family: str
    objectives: tuple[Objective, ...]
    data_seed: int = 0

    @property
    def primary(self) -> Objective:
        """The objective that improvement targets by default."""
        return self.objectives[0]

    @property
    def guards(self) -> tuple[Objective, ...]:
        """Objectives that must not regress beyond their tolerance."""
        return self.objectives[1:]

    def objective(self, name: str) -> Objective:
        for obj in self.objectives:
            if obj.name == name:
                return obj
        raise TaskError(
            f"task {self.name!r} has no objective {name!r}; "
            f"its objectives are {[o.name for o in self.objectives]}."
        )

    @abc.abstractmethod
    def splits(self) -> DataSplits:
        """The data, split once and the same at every call (cache it)."""

    @abc.abstractmethod
    def build(self, params: Mapping[str, Any]) -> nn.Module:
        """A fresh module for architecture ``params`` (must be deterministic in shape)."""

    @abc.abstractmethod
    def default_params(self) -> dict[str, Any]:
        """Architecture params of a reasonable first model."""

    @abc.abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch (a scalar tensor with a gradient)."""

    @abc.abstractmethod
    def per_example(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        """Per-example values of each data objective (e.g. ``{"accuracy": [1, 0, 1, ...]}``).

        The mean of each array is the objective's value on the split; the arrays are paired
        across models (same examples, same order), which is what the judge's tests need.
        """

    def initial_params(self) -> dict[str, Any]:
        """Params of the deliberately weak first incumbent (defaults to :meth:`default_params`)."""
        return self.default_params()

    def search_space(self) -> SearchSpace | None:
        """The architecture params worth searching (``None``: this task offers no space, so
        architecture search does not apply)."""
        return None

    def initial_training(self) -> dict[str, Any]:
        """Training config overrides for the first incumbent (brief by default)."""
        return {"epochs": 1}

    def example_input(self, batch: int) -> torch.Tensor:
        """A batch of real validation inputs, for latency measurement."""
        x = self.splits().validation.x
        reps = -(-batch // len(x))
        return x.repeat((reps,) + (1,) * (x.dim() - 1))[:batch]


_Builder = Callable[[Mapping[str, Any]], nn.Module]


def check_class_labels(name: str, y: np.ndarray) -> None:
    """Refuse class labels that are not the integers ``0..C-1`` (one line, with the fix):
    labels ``1..3`` or ``1.5`` would otherwise be accepted here and fail later, inside an
    experiment, as an index error of the loss.

    Raises:
        TaskError: Labels not integers, negative, or not starting at 0.
    """
    if y.ndim != 1 or y.size == 0:
        raise TaskError(f"task {name!r}: class labels must be one integer per example.")
    if not np.issubdtype(y.dtype, np.integer):
        try:
            whole = np.isfinite(y).all() and bool((y == np.round(y)).all())
        except TypeError:
            whole = False
        if not whole:
            raise TaskError(
                f"task {name!r}: class labels must be the integers 0..C-1, but some are not "
                "integers; map them first, e.g. numpy.unique(y, return_inverse=True)[1]."
            )
    low, high = int(np.min(y)), int(np.max(y))
    if low != 0:
        raise TaskError(
            f"task {name!r}: class labels must be the integers 0..C-1, but they run from {low} "
            f"to {high}; map them first, e.g. numpy.unique(y, return_inverse=True)[1]."
        )


def check_arrays(name: str, kind: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The inputs and targets of a task as arrays, refused in one line with the fix when they
    cannot make one: not numbers, inputs not ``(examples, features...)``, as many targets as
    inputs, NaN or infinity, class labels other than ``0..C-1``.

    Raises:
        TaskError: What is wrong, and how to fix it.
    """
    try:
        xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"task {name!r}: inputs must be an array of numbers ({exc}).") from None
    if xa.ndim < 2:
        raise TaskError(
            f"task {name!r}: inputs must be (examples, features), but got shape {xa.shape}; "
            "for one feature use x.reshape(-1, 1)."
        )
    if len(ya) != len(xa):
        raise TaskError(
            f"task {name!r}: {len(xa)} inputs but {len(ya)} targets; give one target per input."
        )
    if not np.isfinite(xa).all():
        bad = int((~np.isfinite(xa)).any(axis=tuple(range(1, xa.ndim))).sum())
        raise TaskError(
            f"task {name!r}: {bad} input row(s) hold NaN or infinity; drop or impute them first."
        )
    if kind == "classification":
        check_class_labels(name, ya)
    else:
        try:
            ya = ya.astype(np.float64)
        except (TypeError, ValueError):
            raise TaskError(f"task {name!r}: regression targets must be numbers.") from None
        if not np.isfinite(ya).all():
            raise TaskError(
                f"task {name!r}: some regression targets are NaN or infinity; drop those rows."
            )
    return xa, ya


class SupervisedTask(Task):
    """A task over arrays: classification (accuracy) or regression (mean squared error).

    Use :meth:`classification` or :meth:`regression` to build one from ``(X, y)``; they split
    60 / 20 / 20 by ``data_seed`` (stratified for classification).

    Args:
        name: Task name.
        kind: ``"classification"`` or ``"regression"``.
        splits: The data.
        build: ``params -> nn.Module``.
        default_params: Params of a reasonable model.
        target: Target of the primary objective (accuracy or mse).
        family: Task family (defaults to ``name``).
        initial_params: Params of a deliberately weak first model (defaults to ``default_params``).
        latency_tolerance: Guard tolerance on batch-1 latency (relative).
        accuracy_tolerance: Guard tolerance on accuracy, in points (0.01 = one point).
        size_limit_bytes: Largest checkpoint a candidate may have (``None``: no bound). While
            the primary objective is improved, size is a cost bounded only by this limit; while
            latency or size is improved, size may also grow by at most 5 %.
        search_space: Architecture params worth searching (see :mod:`selfimprove.tasks._space`).
    """

    def __init__(
        self,
        name: str,
        *,
        kind: str,
        splits: DataSplits,
        build: _Builder,
        default_params: Mapping[str, Any],
        target: float | None = None,
        family: str | None = None,
        initial_params: Mapping[str, Any] | None = None,
        initial_training: Mapping[str, Any] | None = None,
        latency_tolerance: float = 0.25,
        accuracy_tolerance: float = 0.01,
        size_limit_bytes: float | None = None,
        search_space: SearchSpace | None = None,
        data_seed: int = 0,
    ) -> None:
        if kind not in ("classification", "regression"):
            raise TaskError(f"kind must be 'classification' or 'regression', but got {kind!r}.")
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise TaskError(f"task name must be a simple identifier, but got {name!r}.")
        self.name = name
        self.kind = kind
        self.family = family or name
        self._splits = splits
        self._build = build
        self._default_params = dict(default_params)
        self._initial_params = dict(initial_params) if initial_params else None
        self._initial_training = dict(initial_training) if initial_training else None
        self.data_seed = data_seed
        self._search_space = dict(search_space) if search_space else None
        # As a guard (when a strategy targets latency or size), accuracy may drop by at most
        # one point and a mean squared error may grow by at most 10 %.
        primary = (
            Objective(
                "accuracy",
                Direction.MAXIMIZE,
                target=target,
                ideal=1.0,
                unit="points",
                tolerance=accuracy_tolerance,
                absolute_tolerance=True,
            )
            if kind == "classification"
            else Objective("mse", Direction.MINIMIZE, target=target, ideal=0.0, tolerance=0.1)
        )
        if size_limit_bytes is not None and not size_limit_bytes > 0:
            raise TaskError(f"size_limit_bytes must be > 0, but got {size_limit_bytes=}.")
        self.objectives = (
            primary,
            latency_objective(latency_tolerance),
            size_objective(limit_bytes=size_limit_bytes),
        )

    # ---------------------------------------------------------------- constructors
    @classmethod
    def classification(cls, name: str, x: Any, y: Any, **kwargs: Any) -> SupervisedTask:
        """A classification task from arrays; labels must be integers ``0..C-1``.

        Keyword arguments are those of the constructor (``build``, ``default_params``,
        ``target``, ...) except ``kind`` and ``splits``.
        """
        return cls._from_arrays(name, "classification", x, y, **kwargs)

    @classmethod
    def regression(cls, name: str, x: Any, y: Any, **kwargs: Any) -> SupervisedTask:
        """A regression task from arrays (targets of shape ``(N,)`` or ``(N, K)``)."""
        return cls._from_arrays(name, "regression", x, y, **kwargs)

    @classmethod
    def _from_arrays(
        cls, name: str, kind: str, x: Any, y: Any, *, data_seed: int = 0, **kwargs: Any
    ) -> SupervisedTask:
        classify = kind == "classification"
        xa, ya = check_arrays(name, kind, x, y)
        xs = torch.as_tensor(xa, dtype=torch.float32)
        ys = torch.as_tensor(ya, dtype=torch.long if classify else torch.float32)
        if not classify and ys.dim() == 1:
            ys = ys[:, None]
        try:
            splits = split_arrays(xs, ys, seed=data_seed, stratify=classify)
        except ValueError as exc:  # scikit-learn's stratified split: a class too small
            raise TaskError(
                f"task {name!r}: cannot split 60/20/20 keeping every class in each split ({exc}); "
                "give each class at least 5 examples, or drop the rare ones."
            ) from None
        return cls(name, kind=kind, splits=splits, data_seed=data_seed, **kwargs)

    # ---------------------------------------------------------------- contract
    def splits(self) -> DataSplits:
        return self._splits

    def build(self, params: Mapping[str, Any]) -> nn.Module:
        try:
            return self._build(params)
        except (KeyError, TypeError, ValueError) as exc:
            raise TaskError(
                f"task {self.name!r} cannot build a model from params {dict(params)}: {exc}"
            ) from None

    def default_params(self) -> dict[str, Any]:
        return dict(self._default_params)

    def initial_params(self) -> dict[str, Any]:
        return dict(self._initial_params or self._default_params)

    def search_space(self) -> SearchSpace | None:
        return dict(self._search_space) if self._search_space else None

    def initial_training(self) -> dict[str, Any]:
        return (
            dict(self._initial_training) if self._initial_training else super().initial_training()
        )

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.kind == "classification":
            return nn.functional.cross_entropy(outputs, targets)
        return nn.functional.mse_loss(outputs, targets)

    def per_example(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        outputs = outputs.detach()
        if self.kind == "classification":
            correct = (outputs.argmax(dim=-1) == targets).to(torch.float64)
            # A NaN output has no meaningful argmax: count it as wrong, never as right.
            correct[~torch.isfinite(outputs).all(dim=-1)] = 0.0
            return {"accuracy": correct.numpy()}
        sq = (outputs.double() - targets.double()) ** 2
        return {"mse": sq.reshape(len(sq), -1).mean(dim=1).numpy()}


def split_arrays(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int,
    stratify: bool,
    fractions: tuple[float, float] = (0.6, 0.2),
) -> DataSplits:
    """Split arrays 60 / 20 / 20 (by default) with scikit-learn, seeded, optionally stratified."""
    from sklearn.model_selection import train_test_split

    if len(x) < 10:
        raise TaskError(f"a task needs at least 10 examples to split, but got {len(x)}.")
    idx = np.arange(len(x))
    labels = y.numpy() if stratify else None
    train_frac, val_frac = fractions
    idx_train, idx_rest = train_test_split(
        idx, train_size=train_frac, random_state=seed, stratify=labels
    )
    rest_labels = labels[idx_rest] if labels is not None else None
    idx_val, idx_test = train_test_split(
        idx_rest,
        train_size=val_frac / (1 - train_frac),
        random_state=seed,
        stratify=rest_labels,
    )

    def take(ix: np.ndarray) -> Split:
        t = torch.as_tensor(np.sort(ix))
        return Split(x[t], y[t])

    return DataSplits(take(idx_train), take(idx_val), take(idx_test))
