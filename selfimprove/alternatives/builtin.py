"""Built-in operations with neural alternatives: seed 000's brain-inspired neural models.

Each operation is an algorithm of the system itself, a seeded sampler of its inputs, and a
task whose labels the algorithm computes (see :mod:`selfimprove.alternatives`):

- ``hormone_response`` — what :class:`HormoneSystemController` does to four hormone levels
  given an event, its gain and the cycles that pass: inputs ``[levels (4), one-hot event (4),
  gain, cycles]``, outputs the next levels (4). :class:`HormoneNeuralIntegration` routes the
  response through a :class:`NeuralAlternative`.
- ``trigger_activation`` — the boost that a fixed, seeded population of genetic triggers gives
  each strategy family, as a function of the environment vector: inputs the six ``FEATURES``
  in [0, 1], outputs ``log(boost)`` for each of the four ``FAMILIES`` (0 = no boost; the log
  turns products of boosts into sums, a smoother target).
- ``memory_consolidation`` — compressing 32-d memory vectors (rank-6 signal plus noise)
  through a bottleneck of 8: the task is an autoencoder (labels are the inputs themselves,
  its MLP always has an 8-unit layer); the algorithm is truncated PCA with the same 8
  components, fitted with numpy's SVD on the training inputs.

Operations are built once per process (``*_operation()``, cached); the task factories take
no required argument, like the other built-in tasks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.alternatives import (
    ALTERNATIVE_FAMILY,
    NeuralAlternative,
    Operation,
    operation_task,
    register_alternative,
)
from selfimprove.brain.environment import FEATURES
from selfimprove.brain.hormones import DEFAULT_HORMONES, HormoneEvent, HormoneSystemController
from selfimprove.brain.triggers import FAMILIES, GeneticTriggerSystem
from selfimprove.errors import ConfigError, TaskError
from selfimprove.registry import ModelHome
from selfimprove.seeding import numpy_rng
from selfimprove.tasks._base import SupervisedTask, split_arrays
from selfimprove.tasks._mlp import build_mlp
from selfimprove.tasks._space import MLP_SPACE

__all__ = [
    "ALTERNATIVE_TASKS",
    "HORMONES",
    "HORMONE_EVENTS",
    "MEMORY_BOTTLENECK",
    "MEMORY_FEATURES",
    "OPERATIONS",
    "TRIGGER_SEED",
    "HormoneNeuralIntegration",
    "build_bottleneck_mlp",
    "encode_hormone_input",
    "hormone_response",
    "hormone_response_operation",
    "memory_consolidation",
    "memory_consolidation_operation",
    "trigger_activation",
    "trigger_activation_operation",
]

#: Hormone order of the inputs and outputs of ``hormone_response``.
HORMONES: tuple[str, ...] = tuple(s.name for s in DEFAULT_HORMONES)
#: Event order of the one-hot part of the inputs of ``hormone_response``.
HORMONE_EVENTS: tuple[HormoneEvent, ...] = tuple(HormoneEvent)
#: Range of the gain and of the cycles elapsed that ``hormone_response`` samples.
HORMONE_MAX_GAIN, HORMONE_MAX_CYCLES = 0.6, 4.0

#: Seed of the fixed trigger population behind ``trigger_activation``.
TRIGGER_SEED = 0
TRIGGER_POPULATION = 12

#: Width of a memory vector, rank of its signal, noise level and the bottleneck width.
MEMORY_FEATURES, MEMORY_RANK, MEMORY_NOISE, MEMORY_BOTTLENECK = 32, 6, 0.1, 8
MEMORY_EXAMPLES = 3000

#: A reasonable network for the step functions of ``trigger_activation``.
_TRIGGER_PARAMS = {"width": 128, "depth": 2, "activation": "relu", "dropout": 0.0}


# ---------------------------------------------------------------------- hormone response
def encode_hormone_input(
    levels: Mapping[str, float], event: HormoneEvent | str, gain: float, cycles: float
) -> np.ndarray:
    """One input row of ``hormone_response``.

    Args:
        levels: A level for each of :data:`HORMONES`.
        event: The event (a :class:`HormoneEvent` or its value).
        gain: The event's gain (used by promotions).
        cycles: Cycles of decay after the event (>= 0).

    Returns:
        ``(10,)`` float32: levels (4), one-hot event (4), gain, cycles.

    Raises:
        ConfigError: A hormone is missing, the event is unknown, or ``cycles`` < 0.
    """
    missing = [h for h in HORMONES if h not in levels]
    if missing:
        raise ConfigError(f"levels must give every hormone of {HORMONES}; missing {missing}.")
    try:
        ev = HormoneEvent(event)
    except ValueError:
        raise ConfigError(
            f"unknown hormone event {event!r}; use one of {[e.value for e in HORMONE_EVENTS]}."
        ) from None
    if not (math.isfinite(cycles) and cycles >= 0):
        raise ConfigError(f"cycles must be a finite number >= 0, but got {cycles=}.")
    onehot = [1.0 if e is ev else 0.0 for e in HORMONE_EVENTS]
    row = [float(levels[h]) for h in HORMONES] + onehot + [float(gain), float(cycles)]
    return np.asarray(row, dtype=np.float32)


def _hormone_algorithm(x: np.ndarray) -> np.ndarray:
    """(N, 10) -> (N, 4): a fresh controller per row: set_level, on_event, tick."""
    out = np.empty((len(x), len(HORMONES)), dtype=np.float32)
    for i, row in enumerate(x):
        ctrl = HormoneSystemController()
        for j, name in enumerate(HORMONES):
            ctrl.set_level(name, float(row[j]))
        n = len(HORMONES)
        ctrl.on_event(
            HORMONE_EVENTS[int(np.argmax(row[n : n + len(HORMONE_EVENTS)]))], float(row[-2])
        )
        ctrl.tick(float(row[-1]))
        levels = ctrl.get_hormone_levels()
        out[i] = [levels[name] for name in HORMONES]
    return out


def _hormone_sampler(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 10): levels uniform in [0, 1], a uniform event, gain and cycles uniform."""
    levels = rng.random((n, len(HORMONES)))
    onehot = np.eye(len(HORMONE_EVENTS))[rng.integers(0, len(HORMONE_EVENTS), n)]
    gain = rng.uniform(0.0, HORMONE_MAX_GAIN, (n, 1))
    cycles = rng.uniform(0.0, HORMONE_MAX_CYCLES, (n, 1))
    return np.concatenate([levels, onehot, gain, cycles], axis=1)


@functools.cache
def hormone_response_operation() -> Operation:
    """The hormone controller's response as an :class:`Operation` (budget: 1 % of the
    variance of the next levels)."""
    return Operation(
        name="hormone_response",
        algorithm=_hormone_algorithm,
        sampler=_hormone_sampler,
        in_features=len(HORMONES) + len(HORMONE_EVENTS) + 2,
        out_features=len(HORMONES),
        error_budget=0.01,
        n_examples=3000,
        description="next hormone levels after an event and some cycles of decay",
    )


def hormone_response(data_seed: int = 0) -> SupervisedTask:
    """Task: the next hormone levels, labelled by :class:`HormoneSystemController`."""
    return operation_task(hormone_response_operation(), data_seed=data_seed)


class HormoneNeuralIntegration:
    """The hormone controller's response, served by its algorithm or its neural alternative.

    Args:
        hormone_system: The controller whose current levels are the default starting point.
            It must use :data:`~selfimprove.brain.hormones.DEFAULT_HORMONES` (the operation's
            algorithm does).
        alternative: A :class:`NeuralAlternative` of :func:`hormone_response_operation`.

    Raises:
        ConfigError: The controller uses other hormones, or the alternative serves another
            operation.
    """

    def __init__(
        self, hormone_system: HormoneSystemController, alternative: NeuralAlternative
    ) -> None:
        if tuple(hormone_system.specs.values()) != DEFAULT_HORMONES:
            raise ConfigError(
                "HormoneNeuralIntegration needs a controller with DEFAULT_HORMONES (the "
                f"algorithm's), but got {sorted(hormone_system.specs)}; build the controller "
                "with its default specs."
            )
        if alternative.operation.name != hormone_response_operation().name:
            raise ConfigError(
                f"the alternative serves {alternative.operation.name!r}, not "
                "'hormone_response'; pass one built from hormone_response_operation()."
            )
        self.hormone_system = hormone_system
        self.alternative = alternative

    @classmethod
    def create(
        cls,
        improver: ModelHome,
        *,
        hormone_system: HormoneSystemController | None = None,
        seed: int = 0,
    ) -> HormoneNeuralIntegration:
        """Register (or load) the ``hormone_response`` model in ``improver`` and serve it.

        Args:
            improver: A :class:`~selfimprove.loop.improver.SelfImprover`.
            hormone_system: The controller (default: a fresh one).
            seed: Seeds the first model's training and the reference inputs.

        Returns:
            The integration; its alternative follows promotions through ``refresh()``.
        """
        alt = register_alternative(
            improver, hormone_response_operation(), seed=seed, task=hormone_response()
        )
        return cls(hormone_system or HormoneSystemController(), alt)

    def response(
        self,
        levels: Mapping[str, float] | None = None,
        event: HormoneEvent | str = HormoneEvent.PROMOTION,
        gain: float = 0.0,
        cycles: float = 1.0,
    ) -> dict[str, float]:
        """The levels after ``event`` (with ``gain``) and ``cycles`` of decay, routed by the
        tracker (the network only when within budget and faster).

        Args:
            levels: Starting levels (default: the controller's current levels).
            event: The event.
            gain: Its gain.
            cycles: Cycles of decay after it.

        Returns:
            ``{hormone: level}``. The controller itself is not changed.
        """
        start = self.hormone_system.get_hormone_levels() if levels is None else levels
        row = encode_hormone_input(start, event, gain, cycles)
        out = self.alternative(row[None, :])[0]  # (1, 10) -> (1, 4) -> (4,)
        return {name: float(v) for name, v in zip(HORMONES, out, strict=True)}

    def summary(self) -> dict[str, Any]:
        """The alternative's routing report and the controller's levels."""
        return {"levels": self.hormone_system.get_hormone_levels(), **self.alternative.summary()}


# ---------------------------------------------------------------------- trigger activation
def _trigger_algorithm(system: GeneticTriggerSystem) -> Callable[[np.ndarray], np.ndarray]:
    def algorithm(x: np.ndarray) -> np.ndarray:
        """(N, 6) -> (N, 4): log of each family's boost in the environment of each row."""
        out = np.empty((len(x), len(FAMILIES)), dtype=np.float32)
        for i, row in enumerate(x):
            env = {f: float(v) for f, v in zip(FEATURES, row, strict=True)}
            out[i] = [math.log(system.boost(fam, env)[0]) for fam in FAMILIES]
        return out

    return algorithm


def _trigger_sampler(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 6): an environment vector uniform in [0, 1]^6."""
    return rng.random((n, len(FEATURES)))


@functools.cache
def trigger_activation_operation() -> Operation:
    """Genetic-trigger boosts as an :class:`Operation` (budget: 10 % of the variance: the
    target is a step function in six dimensions, which a network only approximates)."""
    # A private population that nothing evolves: the algorithm is a fixed function.
    system = GeneticTriggerSystem(TRIGGER_POPULATION, seed=TRIGGER_SEED)
    return Operation(
        name="trigger_activation",
        algorithm=_trigger_algorithm(system),
        sampler=_trigger_sampler,
        in_features=len(FEATURES),
        out_features=len(FAMILIES),
        error_budget=0.1,
        n_examples=5000,
        description="log boost of each strategy family from a fixed trigger population",
    )


def trigger_activation(data_seed: int = 0) -> SupervisedTask:
    """Task: log boosts of the four families, labelled by a fixed trigger population."""
    return operation_task(
        trigger_activation_operation(), data_seed=data_seed, default_params=_TRIGGER_PARAMS
    )


# ---------------------------------------------------------------------- memory consolidation
def build_bottleneck_mlp(
    features: int, bottleneck: int, params: Mapping[str, Any]
) -> nn.Sequential:
    """An autoencoder MLP ``features -> ... -> bottleneck -> ... -> features``.

    With ``width`` and ``depth`` (as in :data:`MLP_SPACE`): ``depth`` layers of ``width``,
    the ``bottleneck`` layer, ``depth`` layers of ``width``. An explicit ``widths`` list (what
    pruning writes) is used as it is, but must keep a layer no wider than ``bottleneck``.

    Raises:
        TaskError: ``widths`` has no layer of at most ``bottleneck`` units.
    """
    widths = params.get("widths")
    if widths is None:
        width, depth = int(params.get("width", 64)), int(params.get("depth", 1))
        widths = [width] * depth + [bottleneck] + [width] * depth
    elif not widths or min(int(w) for w in widths) > bottleneck:
        raise TaskError(
            f"an autoencoder needs a hidden layer of at most {bottleneck} units, but got "
            f"widths={list(widths)}; include a bottleneck layer."
        )
    return build_mlp(features, features, {**params, "widths": list(widths)})


def _memory_sampler(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 32): a rank-6 signal (fixed, seeded basis) plus isotropic noise."""
    basis = numpy_rng("memory_consolidation", "basis").standard_normal(
        (MEMORY_RANK, MEMORY_FEATURES)
    ) / math.sqrt(MEMORY_RANK)  # (6, 32): each feature of the signal has variance ~1
    z = rng.standard_normal((n, MEMORY_RANK))  # (n, 6)
    return z @ basis + MEMORY_NOISE * rng.standard_normal((n, MEMORY_FEATURES))


class _PCA:
    """Truncated PCA: ``x -> mean + (x - mean) V_k^T V_k``."""

    def __init__(self, train: np.ndarray, k: int) -> None:
        data = np.asarray(train, dtype=np.float64)  # (N, D)
        self.mean = data.mean(axis=0)  # (D,)
        _, _, vt = np.linalg.svd(data - self.mean, full_matrices=False)  # vt: (D, D)
        self.components = vt[:k]  # (k, D)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        centred = np.asarray(x, dtype=np.float64) - self.mean  # (N, D)
        code = centred @ self.components.T  # (N, k)
        return (code @ self.components + self.mean).astype(np.float32)  # (N, D)


@functools.cache
def _memory_parts(data_seed: int) -> tuple[Operation, SupervisedTask]:
    # The operation's PCA is fitted on the task's training split, so both come from one draw
    # (the same generator operation_data would use).
    rng = numpy_rng("alternatives", "memory_consolidation", "data", data_seed)
    x = np.asarray(_memory_sampler(rng, MEMORY_EXAMPLES), dtype=np.float32)  # (N, 32)
    t = torch.from_numpy(x)
    splits = split_arrays(t, t.clone(), seed=data_seed, stratify=False)
    pca = _PCA(splits.train.x.numpy(), MEMORY_BOTTLENECK)
    train_x = splits.train.x.numpy()
    pca_mse = float(np.mean((pca(train_x) - train_x) ** 2))
    op = Operation(
        name="memory_consolidation",
        algorithm=pca,
        sampler=_memory_sampler,
        in_features=MEMORY_FEATURES,
        out_features=MEMORY_FEATURES,
        error_budget=0.05,
        n_examples=MEMORY_EXAMPLES,
        description=f"truncated PCA ({MEMORY_BOTTLENECK} components) of 32-d memory vectors",
    )
    task = SupervisedTask(
        "memory_consolidation",
        kind="regression",
        splits=splits,
        build=lambda p: build_bottleneck_mlp(MEMORY_FEATURES, MEMORY_BOTTLENECK, p),
        default_params={"width": 64, "depth": 1, "activation": "silu", "dropout": 0.0},
        initial_params={"width": 16, "depth": 1, "activation": "relu", "dropout": 0.0},
        initial_training={"epochs": 2, "lr": 3e-3},
        # Met when the autoencoder reconstructs within 10 % of PCA's training error.
        target=1.1 * pca_mse,
        family=ALTERNATIVE_FAMILY,
        search_space=MLP_SPACE,
        data_seed=data_seed,
    )
    return op, task


def memory_consolidation_operation(data_seed: int = 0) -> Operation:
    """Truncated PCA (8 components, fitted on the task's training inputs) as an
    :class:`Operation`; its neural alternative is the autoencoder of the task (budget: 5 % of
    the variance of PCA's reconstructions)."""
    return _memory_parts(data_seed)[0]


def memory_consolidation(data_seed: int = 0) -> SupervisedTask:
    """Task: reconstruct 32-d memory vectors through an 8-unit bottleneck (labels = inputs)."""
    return _memory_parts(data_seed)[1]


# ---------------------------------------------------------------------- tables
#: Built-in operations by name.
OPERATIONS: dict[str, Callable[[], Operation]] = {
    "hormone_response": hormone_response_operation,
    "trigger_activation": trigger_activation_operation,
    "memory_consolidation": memory_consolidation_operation,
}

#: Task factories of the built-in operations (for ``selfimprove.tasks.BUILTIN_TASKS``).
ALTERNATIVE_TASKS: dict[str, Callable[[], SupervisedTask]] = {
    "hormone_response": hormone_response,
    "trigger_activation": trigger_activation,
    "memory_consolidation": memory_consolidation,
}
