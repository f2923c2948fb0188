"""The strategy contract: take an incumbent and a context, return a candidate or say why not."""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from selfimprove.config import MAX_EPOCHS, MAX_SECONDS
from selfimprove.errors import BudgetExceededError, ConfigError
from selfimprove.nn.device import CPU
from selfimprove.registry import LoadedModel
from selfimprove.strategies._params import ParamTable, check_params
from selfimprove.tasks import Task

__all__ = ["HARD_STOP_FACTOR", "Budget", "Candidate", "Cost", "Strategy", "StrategyContext"]

#: A strategy still running at this multiple of its seconds budget (plus one second of grace)
#: is stopped by :meth:`StrategyContext.check_budget` and its experiment fails.
HARD_STOP_FACTOR = 1.25


@dataclass(frozen=True)
class Budget:
    """What one experiment may spend: training epochs and wall-clock seconds.

    Both are bounded (``MAX_EPOCHS``, ``MAX_SECONDS``): a budget is stored with its experiment
    and feeds later arithmetic (the gain model's features), so it must stay a sane number.
    """

    epochs: int = 30
    seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise ConfigError(
                f"budget epochs must be between 1 and {MAX_EPOCHS}, but got {self.epochs=}."
            )
        if not 0 < self.seconds <= MAX_SECONDS:  # also refuses NaN
            raise ConfigError(
                f"budget seconds must be in (0, {MAX_SECONDS:g}], but got {self.seconds=}."
            )

    @property
    def hard_limit_s(self) -> float:
        """Seconds after which a strategy is stopped and its experiment fails."""
        return self.seconds * HARD_STOP_FACTOR + 1.0


@dataclass(frozen=True)
class Cost:
    """What an experiment actually spent."""

    epochs: int
    seconds: float


@dataclass(frozen=True)
class StrategyContext:
    """Everything a strategy may use.

    Attributes:
        task: The model's task (data splits, builder, objectives).
        objective: Name of the objective to improve.
        budget: Epochs and seconds allowed.
        seed: Seed of this experiment, derived from (cycle, model, strategy).
        teachers: Loaded models that may teach (distillation): incumbents of other models of
            the same task, and earlier versions of this model.
        params: Strategy-specific settings (e.g. ``{"lr": 3e-4}``).
        started: ``time.monotonic()`` when the experiment started (budget clock).
        warm_starts: For a strategy that searches (``warm_startable``): the settings that won
            its earlier experiments on this model, newest first; the search tries those that
            fit its space first (Optuna ``enqueue_trial``).
        device: Where the strategy runs. ``task`` is then a view whose splits and fresh
            modules are on this device (:func:`selfimprove.tasks.on_device`), and the
            incumbent and teachers are there too; a strategy that makes tensors of its own
            makes them here. The candidate may be left on it (the worker moves it back).
    """

    task: Task
    objective: str
    budget: Budget
    seed: int
    teachers: tuple[LoadedModel, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    warm_starts: tuple[dict[str, Any], ...] = ()
    device: torch.device = CPU

    def elapsed(self) -> float:
        """Seconds since the experiment started."""
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left of the budget (may be negative)."""
        return self.budget.seconds - self.elapsed()

    def check_budget(self) -> None:
        """Stop a strategy that has run past its budget.

        Raises:
            BudgetExceededError: More than :attr:`Budget.hard_limit_s` seconds have passed.
        """
        elapsed = self.elapsed()
        if elapsed > self.budget.hard_limit_s:
            raise BudgetExceededError(
                f"stopped after {elapsed:.1f} s: over its budget of {self.budget.seconds:g} s"
            )


@dataclass(frozen=True)
class Candidate:
    """A strategy's result: a new module (never the incumbent's own object) and its lineage.

    Attributes:
        module: The candidate model.
        params: Architecture params that rebuild ``module`` through the task.
        strategy: Name of the strategy that made it.
        origin: Where its weights came from: ``warm_start``, ``fresh_init``, ``teacher:<name>``.
        details: What was done (settings, epochs, stopping reason), for the record.
        cost: What it cost.
    """

    module: nn.Module
    params: dict[str, Any]
    strategy: str
    origin: str
    details: dict[str, Any]
    cost: Cost


class Strategy(abc.ABC):
    """An improvement strategy.

    Subclasses set ``name``, ``family`` (``training``, ``optimisation``, ``architecture`` or
    ``distillation``) and ``PARAMS``, implement :meth:`apply`, and may narrow :meth:`applicable`.
    A strategy reads ``context.params`` through :meth:`check_params`, so the settings a request
    is checked against before anything is recorded are the ones the strategy reads.

    Attributes:
        name: Key in the strategy table.
        family: Kind of improvement (seed 000's four kinds).
        default_objective: Objective targeted when none is named (``None``: the task's primary).
        needs_teachers: Whether the loop should load teachers into the context.
        warm_startable: Whether the loop should hand it the settings that won its earlier
            experiments on the model (``context.warm_starts``; each records them as
            ``best_params``).
        cpu_only: Whether it always runs on the CPU, whatever the configured device (its
            candidate has CPU-only kernels, as int8 quantization does).
        PARAMS: The settings it understands (name -> :class:`~selfimprove.strategies.Param`).
    """

    name: ClassVar[str]
    family: ClassVar[str]
    default_objective: ClassVar[str | None] = None
    needs_teachers: ClassVar[bool] = False
    warm_startable: ClassVar[bool] = False
    cpu_only: ClassVar[bool] = False
    PARAMS: ClassVar[ParamTable] = {}

    def check_params(
        self, params: Mapping[str, Any] | None, budget: Budget | None = None
    ) -> dict[str, Any]:
        """``params`` parsed to the declared types and checked, before anything runs.

        Args:
            params: Settings as given (typed, or text such as ``{"lr": "0.01"}``).
            budget: The experiment's budget (some settings may not exceed its epochs).

        Returns:
            The given settings, typed (absent ones stay absent: the strategy's defaults apply).

        Raises:
            ConfigError: An unknown key (the message lists the known ones), or a value of the
                wrong kind, out of range, NaN or infinite.
        """
        return check_params(self.name, self.PARAMS, params, budget.epochs if budget else None)

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` if the strategy can run here, else the reason it cannot."""
        return None

    @abc.abstractmethod
    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Build a candidate from a **copy** of ``incumbent.module``.

        Must never change ``incumbent.module``; must respect ``context.budget`` (plan with
        :meth:`StrategyContext.remaining`, call :meth:`StrategyContext.check_budget` in long
        loops); must be deterministic given ``context.seed``.

        Raises:
            StrategyError: No candidate could be produced (``DivergedError`` for NaN training).
        """
