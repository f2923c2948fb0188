"""`NeuralAlternative`: an operation served by its algorithm or by a network, call by call.

The network is an ordinary registered model (named after the operation), so the improvement
loop trains, judges and promotes it like any other; :meth:`NeuralAlternative.refresh` picks up
a promotion and re-validates it. :func:`register_alternative` trains the first one on the
operation's generated data and registers it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.alternatives._operation import Operation, operation_task, output_scale
from selfimprove.alternatives._tracker import PerformanceTracker, Route, Validation
from selfimprove.errors import ConfigError
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.registry import ModelHome
from selfimprove.seeding import derive_seed, numpy_rng, torch_seeded
from selfimprove.tasks._base import Task

__all__ = ["REFERENCE_SIZE", "NeuralAlternative", "register_alternative"]

logger = logging.getLogger(__name__)

#: Reference inputs drawn (seeded) for validation when none are given.
REFERENCE_SIZE = 512


class NeuralAlternative:
    """A callable that serves an :class:`Operation` by its algorithm or its neural alternative.

    Each call asks the tracker where to go (see :mod:`selfimprove.alternatives._tracker`): the
    network only when its last validation put it within the error budget and faster at the
    call's batch size, with every k-th such call shadow-checked against the algorithm.

    Args:
        operation: The operation served.
        module: The network, ``(N, in_features) -> (N, out_features)`` float32 tensors.
        tracker: Routing and its figures (default: one with the operation's budget, its scale
            measured on the reference inputs).
        reference: ``(M, in_features)`` inputs for validation (default: ``REFERENCE_SIZE``
            draws from the operation's sampler, seeded by ``seed``).
        seed: Seeds the default reference inputs.
        validate: Validate now (otherwise the algorithm serves until :meth:`revalidate`).

    Raises:
        TaskError: The reference inputs do not fit the operation.
        ConfigError: The tracker was made for another error budget.
    """

    def __init__(
        self,
        operation: Operation,
        module: nn.Module,
        *,
        tracker: PerformanceTracker | None = None,
        reference: np.ndarray | None = None,
        seed: int = 0,
        validate: bool = True,
    ) -> None:
        self.operation = operation
        if reference is None:
            rng = numpy_rng("alternatives", operation.name, "reference", seed)
            reference = operation.sample(rng, REFERENCE_SIZE)
        self.reference = operation.check_input(reference)  # (M, in_features)
        if tracker is None:
            scale = output_scale(operation.run(self.reference))
            tracker = PerformanceTracker(operation.name, operation.error_budget, scale)
        elif tracker.error_budget != operation.error_budget:
            raise ConfigError(
                f"the tracker holds {operation.name!r} to budget {tracker.error_budget:g} but "
                f"the operation says {operation.error_budget:g}; build the tracker with "
                "error_budget=operation.error_budget."
            )
        self.tracker = tracker
        self._lock = threading.Lock()
        self._module = module.eval()
        self._improver: ModelHome | None = None
        self._model_name: str | None = None
        self._version: int | None = None
        if validate:
            self.revalidate()

    # ------------------------------------------------------------------ registry link
    @classmethod
    def from_registry(
        cls,
        improver: ModelHome,
        operation: Operation,
        *,
        name: str | None = None,
        tracker: PerformanceTracker | None = None,
        reference: np.ndarray | None = None,
        seed: int = 0,
        validate: bool = True,
    ) -> NeuralAlternative:
        """The alternative served by the incumbent of model ``name`` (default: the operation's
        name), loaded with ``improver.load``; :meth:`refresh` follows later promotions.

        Raises:
            NotFoundError: No such model.
            CheckpointError: Its checkpoint fails its checksum.
        """
        model_name = name or operation.name
        loaded = improver.load(model_name)
        alt = cls(
            operation,
            loaded.module,
            tracker=tracker,
            reference=reference,
            seed=seed,
            validate=False,
        )
        alt._improver, alt._model_name, alt._version = improver, model_name, loaded.version.number
        if validate:
            alt.revalidate()
        return alt

    @property
    def module(self) -> nn.Module:
        """The network serving neural calls now."""
        return self._module

    @property
    def model_name(self) -> str | None:
        """The registered model behind the network (``None`` when built from a module)."""
        return self._model_name

    @property
    def version(self) -> int | None:
        """The model version loaded (``None`` when built from a module)."""
        return self._version

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the incumbent if it changed since it was loaded (a promotion, a rollback),
        then re-validate it.

        Args:
            force: Reload and re-validate even if the incumbent is the same version.

        Returns:
            Whether another version was loaded.

        Raises:
            ConfigError: This alternative is not linked to a registry (use
                :meth:`from_registry` or :func:`register_alternative`).
        """
        if self._improver is None or self._model_name is None:
            raise ConfigError(
                f"{self.operation.name!r} was built from a module, so there is nothing to "
                "refresh; build it with NeuralAlternative.from_registry(improver, op)."
            )
        current = self._improver.registry.incumbent(self._model_name).number
        if current == self._version and not force:
            return False
        loaded = self._improver.load(self._model_name)
        with self._lock:
            changed = loaded.version.number != self._version
            self._module, self._version = loaded.module.eval(), loaded.version.number
        logger.info("%s: serving %s v%d", self.operation.name, self._model_name, self._version)
        self.revalidate()
        return changed

    def replace_module(self, module: nn.Module, *, validate: bool = True) -> None:
        """Serve ``module`` from now on (and validate it unless told not to)."""
        with self._lock:
            self._module = module.eval()
        if validate:
            self.revalidate()

    # ------------------------------------------------------------------ serving
    def revalidate(self) -> Validation:
        """Validate the current network against the algorithm on the reference inputs; the
        tracker adopts the result (a within-budget result re-opens the neural path)."""
        return self.tracker.validate(self.operation.run, self.neural, self.reference)

    def neural(self, x: np.ndarray) -> np.ndarray:
        """The network's outputs on ``x`` (N, in_features) as float32 (N, out_features).

        Raises:
            TaskError: ``x`` does not fit the operation.
        """
        x = self.operation.check_input(x)
        module = self._module  # one read: a concurrent refresh swaps the whole module
        with torch.inference_mode():
            out = module(torch.as_tensor(x))  # (N, in) -> (N, out)
        return out.numpy().reshape(len(x), self.operation.out_features)

    def algorithm(self, x: np.ndarray) -> np.ndarray:
        """The algorithm's outputs on ``x`` (N, in_features) as float32 (N, out_features)."""
        return self.operation.run(x)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The operation on ``x`` (N, in_features), served by the route the tracker chooses.

        Returns:
            ``(N, out_features)`` float32.

        Raises:
            TaskError: ``x`` does not fit the operation.
        """
        x = self.operation.check_input(x)
        decision = self.tracker.plan(len(x))
        t0 = time.perf_counter()
        if decision.route is Route.ALGORITHM:
            y = self.operation.run(x)
            self.tracker.record_latency(Route.ALGORITHM, time.perf_counter() - t0)
            return y
        y = self.neural(x)
        self.tracker.record_latency(Route.NEURAL, time.perf_counter() - t0)
        if not np.isfinite(y).all():
            self.tracker.fall_back(
                "the neural output was not finite; the algorithm serves until a new validation"
            )
            return self.operation.run(x)
        if decision.shadow:  # after the timing: a shadow check is not part of the call's cost
            self.tracker.record_shadow(y, self.operation.run(x))
        return y

    def summary(self) -> dict[str, Any]:
        """The tracker's report plus the operation, model and version served."""
        return {
            **self.tracker.summary(),
            "operation": self.operation.name,
            "model": self._model_name,
            "version": self._version,
        }


def register_alternative(
    improver: ModelHome,
    op: Operation,
    *,
    seed: int = 0,
    task: Task | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    train: TrainConfig | None = None,
    tracker: PerformanceTracker | None = None,
    validate: bool = True,
) -> NeuralAlternative:
    """Train a first network for ``op`` on its generated data, register it, and serve it.

    The model is registered under ``name`` (default ``op.name``) with the task ``task``
    (default :func:`operation_task(op) <operation_task>`), so the improvement loop improves
    it like any other model. If the model is already registered, nothing is trained: its
    incumbent is loaded.

    Args:
        improver: The home whose registry receives the model.
        op: The operation.
        seed: Seeds the initial weights, the training and the reference inputs.
        task: The task to register under (must share ``op``'s inputs and outputs).
        name: Model name (default ``op.name``).
        params: Architecture params (default: the task's deliberately weak initial params).
        train: Training config (default: the task's initial training, seeded).
        tracker: Routing and its figures (default: built from ``op``).
        validate: Validate the network now.

    Returns:
        The alternative, linked to the registry (see :meth:`NeuralAlternative.refresh`).

    Raises:
        ConfigError: The model name is invalid, or ``params`` do not rebuild the module.
        TaskError: The operation's data cannot be generated.
    """
    model_name = name or op.name
    if improver.store.find_model(model_name) is None:
        task = task or operation_task(op)
        arch = dict(params) if params is not None else task.initial_params()
        init_seed = derive_seed(seed, "alternative", model_name)
        with torch_seeded(init_seed):
            module = task.build(arch)
        config = train or TrainConfig(seed=init_seed, **task.initial_training())
        result = train_(module, task, config)
        improver.register_model(
            model_name,
            task,
            module,
            arch,
            description=f"neural alternative of the operation {op.name!r}",
        )
        logger.info(
            "registered %s: %d epochs, holdout loss %.4g",
            model_name,
            result.epochs_run,
            result.best_holdout_loss,
        )
    return NeuralAlternative.from_registry(
        improver, op, name=model_name, tracker=tracker, seed=seed, validate=validate
    )
