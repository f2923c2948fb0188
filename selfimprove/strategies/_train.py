"""``train``: continue training a copy of the incumbent (warm start) with the honest loop."""

from __future__ import annotations

import copy
from dataclasses import replace

from selfimprove.measure.training import TrainConfig, train_
from selfimprove.objectives import EFFICIENCY_OBJECTIVES
from selfimprove.registry import LoadedModel
from selfimprove.strategies._base import Candidate, Cost, Strategy, StrategyContext
from selfimprove.strategies._params import TRAIN_PARAMS

__all__ = ["TrainStrategy"]

DATA_OBJECTIVES_ONLY = "train improves data objectives (accuracy, loss), not {objective}"


class TrainStrategy(Strategy):
    """Warm-started training of a copy of the incumbent.

    Settings in ``context.params`` override :class:`TrainConfig` fields (``lr``,
    ``weight_decay``, ``batch_size``, ``optimizer``, ``schedule``, ``patience``, ``clip_norm``:
    :data:`~selfimprove.strategies.TRAIN_PARAMS`); epochs and seconds come from the budget, the
    seed from the context. Any other key is refused.
    """

    name = "train"
    family = "training"
    PARAMS = TRAIN_PARAMS

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` for a data objective of a float model, else why not.

        Raises:
            ConfigError: A bad setting in ``context.params`` (refused before anything runs).
        """
        self.check_params(context.params, context.budget)
        if context.objective in EFFICIENCY_OBJECTIVES:
            return DATA_OBJECTIVES_ONLY.format(objective=context.objective)
        if "quantization" in incumbent.version.params:
            return f"{self.name} needs a float model; this version is quantized"
        return None

    def config(self, context: StrategyContext) -> TrainConfig:
        """The training settings: the budget's, overridden by ``context.params``.

        Raises:
            ConfigError: An unknown or bad setting.
        """
        base = TrainConfig(
            epochs=context.budget.epochs,
            max_seconds=max(context.remaining(), 0.01),
            seed=context.seed,
        )
        return replace(base, **self.check_params(context.params, context.budget))

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        module = copy.deepcopy(incumbent.module)
        cfg = self.config(context)
        result = train_(module, context.task, cfg, check=context.check_budget)
        return Candidate(
            module=module,
            params=dict(incumbent.version.params),
            strategy=self.name,
            origin="warm_start",
            details={
                "config": cfg.to_dict(),
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "stopped": result.stopped,
                "best_holdout_loss": result.best_holdout_loss,
            },
            cost=Cost(epochs=result.epochs_run, seconds=result.seconds),
        )
