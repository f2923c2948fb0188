"""Shared machinery of the search strategies (``tune`` and ``evolve``).

Both strategies run many short training trials and pick one of them, so both need:

- Optuna, imported lazily (it is the optional ``search`` extra) with its own logging held at
  WARNING while a study runs, and a study seeded and named from the experiment's seed
  (:func:`seeded_study`);
- one trial loop (:class:`TrialLoop`) that asks for trials until the epoch budget, the seconds
  budget or ``max_trials`` says stop, and records which of them did;
- an :class:`EpochLedger`: the budget counts the *sum* of epochs over all trials (pruned and
  failed trials count what they ran), so every trial gets ``min(per-trial cap, what is left)``;
- a **selection holdout** carved (seeded) from the *training* split, on which trials are scored.

Why a selection holdout of its own, instead of ``train_``'s early-stopping holdout
(``TrainResult.best_holdout_loss``)? ``train_`` carves its holdout with the trial's training
seed, so trials seeded differently would be scored on different examples; and that holdout also
chose each trial's kept epoch, so its loss is the minimum of a noisy curve, an optimistic score
that favours trials with more epochs (more draws). The selection holdout is carved once per
experiment, removed from the data trials train and early-stop on (:class:`TrainingSubset`), and
scores every trial on the same examples that none of them has fitted or early-stopped on.
Validation and test are never read: they belong to the judge.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import ConfigError, DivergedError, StrategyError
from selfimprove.measure.training import TrainConfig, TrainResult, _holdout_split, train_
from selfimprove.objectives import Objective
from selfimprove.seeding import derive_seed
from selfimprove.tasks import DataSplits, SearchSpace, Split, Task

__all__ = [
    "OPTUNA_MISSING",
    "EpochLedger",
    "TrainingSubset",
    "TrialLoop",
    "TrialRun",
    "carve_selection_holdout",
    "float_setting",
    "holdout_error",
    "holdout_loss",
    "int_setting",
    "optuna_missing",
    "quiet_optuna",
    "require_optuna",
    "sampler_seed",
    "seeded_study",
    "space_summary",
    "train_trial",
]

logger = logging.getLogger(__name__)

OPTUNA_MISSING = "needs Optuna, which is not installed: pip install 'selfimprove[search]'"


# ---------------------------------------------------------------------- Optuna
def optuna_missing() -> str | None:
    """``None`` if Optuna can be imported, else the reason and the fix."""
    return None if importlib.util.find_spec("optuna") is not None else OPTUNA_MISSING


def require_optuna() -> ModuleType:
    """Import Optuna.

    Returns:
        The ``optuna`` module.

    Raises:
        StrategyError: Optuna is not installed (the message says how to install it).
    """
    try:
        import optuna
    except ImportError:
        raise StrategyError(OPTUNA_MISSING) from None
    return optuna


@contextlib.contextmanager
def quiet_optuna() -> Iterator[ModuleType]:
    """Hold Optuna's own logger at WARNING inside the block (restored afterwards).

    Optuna logs every finished trial at INFO through its own handler; the strategies log what
    matters through :mod:`logging` themselves.

    Yields:
        The ``optuna`` module.
    """
    optuna = require_optuna()
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(before)


@contextlib.contextmanager
def seeded_study(
    sampler: Callable[[ModuleType], Any],
    *,
    directions: Sequence[str],
    study_name: str,
    pruner: Callable[[ModuleType], Any] | None = None,
) -> Iterator[tuple[ModuleType, Any]]:
    """A new in-memory Optuna study, with Optuna's logging held at WARNING inside the block.

    Args:
        sampler: Builds the (seeded) sampler from the ``optuna`` module.
        directions: ``"minimize"`` or ``"maximize"`` per objective.
        study_name: The study's name; seed it too (Hyperband assigns brackets by hashing it).
        pruner: Builds the pruner from the ``optuna`` module (``None``: Optuna's default).

    Yields:
        The ``optuna`` module and the study.

    Raises:
        StrategyError: Optuna is not installed.
    """
    with quiet_optuna() as optuna:
        study = optuna.create_study(
            directions=list(directions),
            sampler=sampler(optuna),
            pruner=None if pruner is None else pruner(optuna),
            study_name=study_name,
        )
        yield optuna, study


class TrialLoop:
    """Trials asked from ``study`` until a budget says stop; ``stopped`` records which.

    Before each trial: the epoch ledger must allow one more epoch (else ``"epoch_budget"``),
    seconds must be left (else ``"time_budget"``), and fewer than ``max_trials`` trials may
    have run (0: no limit; else ``"max_trials"``).

    Args:
        study: The Optuna study.
        ledger: The epochs the search may spend (the caller charges each trial's epochs).
        remaining: Seconds left of the budget.
        max_trials: The most trials to run (0: no limit).
    """

    def __init__(
        self, study: Any, ledger: EpochLedger, remaining: Callable[[], float], max_trials: int
    ) -> None:
        self.study, self.ledger, self.remaining = study, ledger, remaining
        self.max_trials = max_trials
        self.asked = 0
        self.stopped = "epoch_budget"

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        """Yields ``(trial, epoch cap)`` pairs until a budget says stop."""
        while True:
            cap = self.ledger.next_cap()
            if cap == 0:
                self.stopped = "epoch_budget"
                return
            if self.remaining() <= 0:
                self.stopped = "time_budget"
                return
            if self.max_trials and self.asked >= self.max_trials:
                self.stopped = "max_trials"
                return
            self.asked += 1
            yield self.study.ask(), cap


def sampler_seed(seed: int, *keys: object) -> int:
    """A 32-bit seed for an Optuna sampler (NumPy's ``RandomState`` needs ``< 2**32``)."""
    return derive_seed(seed, *keys) % 2**32


def space_summary(space: SearchSpace) -> dict[str, str]:
    """A readable form of a search space, for the record."""
    return {name: repr(param) for name, param in space.items()}


# ---------------------------------------------------------------------- settings
def int_setting(params: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """An integer setting from ``params`` (``default`` when absent), checked to ``[low, high]``.

    Raises:
        ConfigError: The value is not an integer in range.
    """
    value = params.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (low <= int(value) <= high)
    ):
        raise ConfigError(
            f"setting {key!r} must be an integer in [{low}, {high}], but got {value!r}; "
            f"pass e.g. params={{{key!r}: {default}}}."
        )
    return int(value)


def closed_float_setting(
    params: Mapping[str, Any], key: str, default: float, low: float, high: float = math.inf
) -> float:
    """A float setting from ``params`` (``default`` when absent), checked to ``[low, high]``.

    Raises:
        ConfigError: The value is not a number inside the range, ends included.
    """
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(
            f"setting {key!r} must be a number in [{low:g}, {high:g}], but got {value!r}; "
            f"pass e.g. params={{{key!r}: {default}}}."
        )
    return float(value)


def float_setting(
    params: Mapping[str, Any], key: str, default: float, low: float, high: float
) -> float:
    """A float setting from ``params`` (``default`` when absent), checked to ``(low, high)``.

    Raises:
        ConfigError: The value is not a number strictly inside the range.
    """
    value = params.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (low < float(value) < high)
    ):
        raise ConfigError(
            f"setting {key!r} must be a number in ({low}, {high}), but got {value!r}; "
            f"pass e.g. params={{{key!r}: {default}}}."
        )
    return float(value)


# ---------------------------------------------------------------------- budget
class EpochLedger:
    """The epochs a search may still spend: the sum over trials stays within ``total``.

    Args:
        total: The experiment's epoch budget.
        per_trial: The most epochs one trial may run.
    """

    def __init__(self, total: int, per_trial: int) -> None:
        if total < 1 or per_trial < 1:
            raise ConfigError(
                f"epoch budget and per-trial cap must be >= 1, but got {total=}, {per_trial=}."
            )
        self.total = total
        self.per_trial = per_trial
        self.spent = 0

    @property
    def remaining(self) -> int:
        """Epochs not yet spent."""
        return self.total - self.spent

    def next_cap(self) -> int:
        """Epochs the next trial may run (0: the budget is spent)."""
        return max(0, min(self.per_trial, self.remaining))

    def charge(self, epochs: int) -> None:
        """Record a trial's epochs.

        Raises:
            StrategyError: The charge would overdraw the budget (a bug in the caller).
        """
        if epochs < 0 or epochs > self.remaining:
            raise StrategyError(
                f"cannot charge {epochs} epochs: {self.remaining} of {self.total} are left."
            )
        self.spent += epochs


# ---------------------------------------------------------------------- data
class TrainingSubset(Task):
    """``task`` with its training split narrowed to ``fit``: what a search's trials train on.

    Everything else (builder, loss, objectives, validation and test) is the wrapped task's;
    ``train_`` reads only the training split, so the selection holdout removed from it stays
    unseen by training and early stopping.

    Args:
        task: The real task.
        fit: The part of its training split that trials may train on.
    """

    def __init__(self, task: Task, fit: Split) -> None:
        self.inner = task
        self.name = task.name
        self.family = task.family
        self.objectives = task.objectives
        self.data_seed = task.data_seed
        full = task.splits()
        self._splits = DataSplits(fit, full.validation, full.test)

    def splits(self) -> DataSplits:
        return self._splits

    def build(self, params: Mapping[str, Any]) -> nn.Module:
        return self.inner.build(params)

    def default_params(self) -> dict[str, Any]:
        return self.inner.default_params()

    def initial_params(self) -> dict[str, Any]:
        return self.inner.initial_params()

    def search_space(self) -> SearchSpace | None:
        return self.inner.search_space()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.inner.loss(outputs, targets)

    def per_example(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        return self.inner.per_example(outputs, targets)


def carve_selection_holdout(task: Task, fraction: float, seed: int) -> tuple[TrainingSubset, Split]:
    """Split ``task``'s training split into what trials train on and the selection holdout.

    Args:
        task: The real task.
        fraction: Share of the training split held out for scoring trials.
        seed: Seeds the split (derive it from the experiment's seed).

    Returns:
        The task narrowed to the rest of the training split, and the holdout.

    Raises:
        StrategyError: The training split is too small to hold anything out.
    """
    train = task.splits().train
    if len(train) < 4:
        raise StrategyError(
            f"task {task.name!r} has {len(train)} training examples: too few to carve a "
            "selection holdout from; a search needs at least 4."
        )
    gen = torch.Generator().manual_seed(seed)
    fit, holdout = _holdout_split(train, fraction, gen)
    return TrainingSubset(task, fit), holdout


@torch.no_grad()
def _outputs(module: nn.Module, split: Split, batch: int = 1024) -> torch.Tensor:
    """Outputs of ``module`` on ``split`` in eval mode (its train/eval flag is restored)."""
    was_training = module.training
    module.eval()
    try:
        return torch.cat([module(split.x[i : i + batch]) for i in range(0, len(split), batch)])
    finally:
        module.train(was_training)


def holdout_loss(module: nn.Module, task: Task, split: Split) -> float:
    """The task's mean loss of ``module`` on ``split`` (NaN if any output is not finite)."""
    out = _outputs(module, split)
    if not bool(torch.isfinite(out).all()):
        return math.nan
    return float(task.loss(out, split.y))


def holdout_error(module: nn.Module, task: Task, split: Split, objective: Objective) -> float:
    """The error-like form of ``objective`` (e.g. ``1 - accuracy``) of ``module`` on ``split``.

    Falls back to the task's loss when ``task.per_example`` does not give ``objective``.
    NaN if any output is not finite.
    """
    out = _outputs(module, split)
    if not bool(torch.isfinite(out).all()):
        return math.nan
    values = task.per_example(out, split.y).get(objective.name)
    if values is None:
        return float(task.loss(out, split.y))
    return objective.error(float(np.mean(values)))


# ---------------------------------------------------------------------- one trial
@dataclass(frozen=True)
class TrialRun:
    """What one trial's training did.

    Attributes:
        epochs: Epochs spent, a partly run epoch included (what the budget is charged).
        state: ``"complete"``, ``"pruned"`` or ``"failed"``.
        result: ``train_``'s result (complete trials only).
        reason: Why a trial was pruned or failed.
        seconds: Wall-clock time.
    """

    epochs: int
    state: str
    result: TrainResult | None
    reason: str
    seconds: float


def train_trial(
    module: nn.Module,
    task: Task,
    config: TrainConfig,
    *,
    check: Callable[[], None] | None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrialRun:
    """Train ``module`` in place for one trial, counting the epochs it spends.

    Args:
        module: The trial's model (changed in place).
        task: The task narrowed to the fit data (:class:`TrainingSubset`).
        config: The trial's training config (``epochs`` is its cap).
        check: Budget check passed to ``train_`` (raises past the hard limit).
        on_epoch: Called after each epoch; may raise ``optuna.TrialPruned``.

    Returns:
        The run: pruned trials and diverged ones (``DivergedError``) are returned, not raised.

    Raises:
        BudgetExceededError: ``check`` stopped the run (the experiment must fail).
    """
    optuna = require_optuna()
    done = 0
    in_hook = False

    def count(row: dict[str, float]) -> None:
        nonlocal done, in_hook
        done += 1
        if on_epoch is not None:
            in_hook = True
            on_epoch(row)
            in_hook = False

    t0 = time.perf_counter()
    try:
        result = train_(module, task, config, on_epoch=count, check=check)
    except optuna.TrialPruned as exc:
        return TrialRun(done, "pruned", None, str(exc), time.perf_counter() - t0)
    except DivergedError as exc:
        # Diverged inside an epoch: that partly run epoch is charged too.
        spent = done if in_hook else min(done + 1, config.epochs)
        return TrialRun(spent, "failed", None, str(exc), time.perf_counter() - t0)
    return TrialRun(result.epochs_run, "complete", result, "", time.perf_counter() - t0)
