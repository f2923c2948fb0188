"""The strategy contract: take an incumbent and a context, return a candidate or say why not."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.registry import LoadedModel
from selfimprove.tasks import Task

__all__ = ["Budget", "Candidate", "Cost", "Strategy", "StrategyContext"]


@dataclass(frozen=True)
class Budget:
    """What one experiment may spend: training epochs and wall-clock seconds."""

    epochs: int = 30
    seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"budget epochs must be >= 1, but got {self.epochs=}.")
        if self.seconds <= 0:
            raise ConfigError(f"budget seconds must be > 0, but got {self.seconds=}.")


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
        teachers: Loaded models that may teach (distillation).
        params: Strategy-specific settings (e.g. ``{"lr": 3e-4}``).
    """

    task: Task
    objective: str
    budget: Budget
    seed: int
    teachers: tuple[LoadedModel, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


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

    Subclasses set ``name`` and ``family`` (``training``, ``optimisation``, ``architecture`` or
    ``distillation``), implement :meth:`apply`, and may narrow :meth:`applicable`.
    """

    name: ClassVar[str]
    family: ClassVar[str]

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` if the strategy can run here, else the reason it cannot."""
        return None

    @abc.abstractmethod
    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Build a candidate from a **copy** of ``incumbent.module``.

        Must never change ``incumbent.module``; must respect ``context.budget``; must be
        deterministic given ``context.seed``.

        Raises:
            StrategyError: No candidate could be produced (``DivergedError`` for NaN training).
        """
