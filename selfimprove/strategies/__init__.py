"""Improvement strategies, found through one explicit name -> class table."""

from __future__ import annotations

from selfimprove.config import MAX_EPOCHS, MAX_SECONDS, STRATEGY_NAMES
from selfimprove.errors import NotFoundError
from selfimprove.strategies._base import (
    Budget,
    Candidate,
    Cost,
    Strategy,
    StrategyContext,
)
from selfimprove.strategies._distill import DistillStrategy
from selfimprove.strategies._evolve import EvolveStrategy
from selfimprove.strategies._grow import GrowStrategy
from selfimprove.strategies._heads import HeadsStrategy
from selfimprove.strategies._params import TRAIN_PARAMS, Param
from selfimprove.strategies._prune import PruneStrategy
from selfimprove.strategies._quantize import QuantizeStrategy
from selfimprove.strategies._retrain import RetrainStrategy
from selfimprove.strategies._train import TrainStrategy
from selfimprove.strategies._tune import TuneStrategy

__all__ = [
    "MAX_EPOCHS",
    "MAX_SECONDS",
    "STRATEGIES",
    "TRAIN_PARAMS",
    "Budget",
    "Candidate",
    "Cost",
    "DistillStrategy",
    "EvolveStrategy",
    "GrowStrategy",
    "HeadsStrategy",
    "Param",
    "PruneStrategy",
    "QuantizeStrategy",
    "RetrainStrategy",
    "Strategy",
    "StrategyContext",
    "TrainStrategy",
    "TuneStrategy",
    "get_strategy",
]

STRATEGIES: dict[str, type[Strategy]] = {
    TrainStrategy.name: TrainStrategy,
    RetrainStrategy.name: RetrainStrategy,
    TuneStrategy.name: TuneStrategy,
    EvolveStrategy.name: EvolveStrategy,
    GrowStrategy.name: GrowStrategy,
    QuantizeStrategy.name: QuantizeStrategy,
    PruneStrategy.name: PruneStrategy,
    DistillStrategy.name: DistillStrategy,
    HeadsStrategy.name: HeadsStrategy,
}
assert tuple(STRATEGIES) == STRATEGY_NAMES  # the light copy the command line lists


def get_strategy(name: str | Strategy) -> Strategy:
    """A strategy instance from its name (or the instance itself)."""
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise NotFoundError(
            f"unknown strategy {name!r}; available: {', '.join(sorted(STRATEGIES))}."
        ) from None
