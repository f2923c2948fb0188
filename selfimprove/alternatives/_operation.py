"""`Operation`: an algorithm worth a neural alternative, and the task its outputs define.

An operation is a batched function ``(N, d_in) -> (N, d_out)`` plus a seeded sampler of its
inputs. :func:`operation_task` draws inputs from the sampler, labels them with the algorithm
(the system's own generated data: seed 000's self-supervised pre-training) and returns an
ordinary regression task, so the improvement loop trains, judges and promotes the neural
alternative like any other model.

The error budget is *relative*: the mean squared error of the neural output against the
algorithm's output, divided by the variance of the algorithm's output (averaged over output
dimensions). ``0.02`` means "explains 98 % of the variance of what the algorithm returns"; the
same number means the same thing for a sort and for a hormone response, whatever their scale.

This module imports only ``selfimprove.tasks`` submodules, so ``selfimprove.tasks`` may import
built-in operations from it without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import TaskError
from selfimprove.seeding import numpy_rng
from selfimprove.tasks._base import SupervisedTask, split_arrays
from selfimprove.tasks._mlp import build_mlp
from selfimprove.tasks._space import MLP_SPACE, SearchSpace

__all__ = [
    "ALTERNATIVE_FAMILY",
    "Operation",
    "operation_data",
    "operation_task",
    "output_scale",
    "relative_error",
]

#: Task family of neural alternatives (``neural_sort`` belongs to it too).
ALTERNATIVE_FAMILY = "neural_alternative"

Algorithm = Callable[[np.ndarray], np.ndarray]
Sampler = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class Operation:
    """An algorithmic operation that a neural network may stand in for.

    Attributes:
        name: Identifier (letters, digits, ``_``, ``-``); also the name of its task and model.
        algorithm: The ground truth, batched: ``(N, in_features) -> (N, out_features)``. It
            must be deterministic (same inputs, same outputs) and safe to call from several
            threads at once.
        sampler: ``(generator, N) -> (N, in_features)`` inputs drawn from the operation's
            input distribution, using only the generator it is given.
        in_features: Width of one input row.
        out_features: Width of one output row.
        error_budget: Largest relative error the neural alternative may have: its mean
            squared error against the algorithm divided by the variance of the algorithm's
            outputs (see :func:`relative_error`). In (0, 1).
        n_examples: Examples :func:`operation_task` generates (split 60 / 20 / 20).
        description: One line for reports.
    """

    name: str
    algorithm: Algorithm
    sampler: Sampler
    in_features: int
    out_features: int
    error_budget: float = 0.02
    n_examples: int = 3000
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise TaskError(
                f"operation name must be a simple identifier (letters, digits, '_', '-'), "
                f"but got {self.name!r}."
            )
        if self.in_features < 1 or self.out_features < 1:
            raise TaskError(
                f"operation {self.name!r} needs in_features >= 1 and out_features >= 1, but got "
                f"{self.in_features=}, {self.out_features=}."
            )
        if not (math.isfinite(self.error_budget) and 0 < self.error_budget < 1):
            raise TaskError(
                f"operation {self.name!r}: error_budget is a relative mean squared error and must "
                f"be in (0, 1), but got {self.error_budget=}; 0.02 allows 2 % of the output "
                "variance."
            )
        if self.n_examples < 10:
            raise TaskError(
                f"operation {self.name!r} needs n_examples >= 10 to split, "
                f"but got {self.n_examples=}."
            )

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` inputs from the sampler as float32, shape-checked.

        Args:
            rng: The generator to draw from (the caller owns its seed).
            n: Number of rows (>= 1).

        Returns:
            ``(n, in_features)`` float32.

        Raises:
            TaskError: The sampler returned another shape or non-finite values.
        """
        x = np.asarray(self.sampler(rng, n), dtype=np.float32)
        if x.shape != (n, self.in_features):
            raise TaskError(
                f"operation {self.name!r}: the sampler must return shape ({n}, "
                f"{self.in_features}), but returned {x.shape}; fix the sampler or in_features."
            )
        if not np.isfinite(x).all():
            raise TaskError(f"operation {self.name!r}: the sampler returned non-finite inputs.")
        return x

    def run(self, x: np.ndarray) -> np.ndarray:
        """The algorithm on ``x`` (N, in_features), as float32 of shape (N, out_features).

        Raises:
            TaskError: ``x`` or the algorithm's output has the wrong shape.
        """
        x = self.check_input(x)
        y = np.asarray(self.algorithm(x), dtype=np.float32)
        if y.shape != (len(x), self.out_features):
            raise TaskError(
                f"operation {self.name!r}: the algorithm must return shape ({len(x)}, "
                f"{self.out_features}) for {len(x)} inputs, but returned {y.shape}; fix the "
                "algorithm or out_features."
            )
        return y

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a float32 batch ``(N, in_features)``, or a clear error.

        Raises:
            TaskError: ``x`` is not a 2-D batch of ``in_features`` columns with N >= 1.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_features or len(x) == 0:
            raise TaskError(
                f"operation {self.name!r} takes a batch of shape (N, {self.in_features}) with "
                f"N >= 1, but got {x.shape}; reshape one example with x[None, :]."
            )
        return x


def operation_data(
    op: Operation, *, data_seed: int = 0, n: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs drawn from ``op.sampler`` and the algorithm's outputs on them.

    The generator is derived from ``(op.name, data_seed)``: same seed, same data.

    Args:
        op: The operation.
        data_seed: Seed of the draw.
        n: Rows (default ``op.n_examples``).

    Returns:
        ``x`` (n, in_features) float32 and ``y`` (n, out_features) float32, ``y = op.run(x)``.

    Raises:
        TaskError: The sampler or the algorithm misbehaves (shape, non-finite values).
    """
    n = op.n_examples if n is None else n
    x = op.sample(numpy_rng("alternatives", op.name, "data", data_seed), n)
    y = op.run(x)
    if not np.isfinite(y).all():
        raise TaskError(f"operation {op.name!r}: the algorithm returned non-finite outputs.")
    return x, y


def output_scale(y: np.ndarray) -> float:
    """Variance of the algorithm's outputs, averaged over output dimensions.

    This is the denominator of the relative error.

    Args:
        y: ``(N, out_features)`` outputs of the algorithm.

    Returns:
        The mean per-dimension variance (> 0).

    Raises:
        TaskError: The outputs do not vary (a relative error would be undefined).
    """
    y = np.asarray(y, dtype=np.float64)
    scale = float(y.reshape(len(y), -1).var(axis=0).mean())
    if not scale > 1e-12:
        raise TaskError(
            f"the algorithm's outputs do not vary (variance {scale:.3g}), so a relative error "
            "budget is undefined; sample more varied inputs."
        )
    return scale


def relative_error(neural: np.ndarray, reference: np.ndarray, scale: float) -> float:
    """Mean squared error of ``neural`` against ``reference`` divided by ``scale``.

    Args:
        neural: ``(N, d)`` neural outputs.
        reference: ``(N, d)`` algorithm outputs.
        scale: :func:`output_scale` of the algorithm's outputs.

    Returns:
        The relative error (``inf`` when the neural output is not finite).
    """
    diff = np.asarray(neural, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    mse = float(np.mean(diff**2))
    return mse / scale if math.isfinite(mse) else math.inf


def operation_task(
    op: Operation,
    *,
    data_seed: int = 0,
    build: Callable[[Mapping[str, Any]], nn.Module] | None = None,
    default_params: Mapping[str, Any] | None = None,
    initial_params: Mapping[str, Any] | None = None,
    initial_training: Mapping[str, Any] | None = None,
    search_space: SearchSpace | None = None,
) -> SupervisedTask:
    """The regression task of ``op``: inputs from its sampler, labels from its algorithm.

    The primary objective is the mean squared error; its target is the error budget turned
    absolute (``error_budget ×`` the variance of the training labels), so a model that meets
    the target is within budget. The first incumbent is deliberately weak (a 16-unit MLP
    trained for 2 epochs) and leaves the improvement loop something to prove.

    Args:
        op: The operation.
        data_seed: Seeds the generated data and its split.
        build: ``params -> nn.Module`` (default: :func:`build_mlp` from ``in_features`` to
            ``out_features``).
        default_params: Params of a reasonable model (default: 64 units × 2 layers).
        initial_params: Params of the weak first model (default: 16 units × 1 layer).
        initial_training: Training overrides of the first model (default: 2 epochs).
        search_space: Architecture space (default: :data:`MLP_SPACE`).

    Returns:
        A :class:`SupervisedTask` named ``op.name`` in the family ``neural_alternative``.

    Raises:
        TaskError: The sampler or the algorithm misbehaves.
    """
    x, y = operation_data(op, data_seed=data_seed)
    splits = split_arrays(torch.from_numpy(x), torch.from_numpy(y), seed=data_seed, stratify=False)
    # The target turns the relative budget absolute with the variance of the training labels
    # (never validation or test: those only judge and report).
    target = op.error_budget * output_scale(splits.train.y.numpy())
    return SupervisedTask(
        op.name,
        kind="regression",
        splits=splits,
        build=build or (lambda p: build_mlp(op.in_features, op.out_features, p)),
        default_params=default_params
        or {"width": 64, "depth": 2, "activation": "relu", "dropout": 0.0},
        initial_params=initial_params
        or {"width": 16, "depth": 1, "activation": "relu", "dropout": 0.0},
        initial_training=initial_training or {"epochs": 2, "lr": 3e-3},
        target=target,
        family=ALTERNATIVE_FAMILY,
        search_space=search_space or MLP_SPACE,
        data_seed=data_seed,
    )
