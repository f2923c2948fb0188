"""``retrain``: fresh initialisation, same architecture, trained from scratch within the budget.

Warm-started training cannot leave a bad minimum; a new seeded initialisation can. The
candidate has the incumbent's architecture params and none of its weights.
"""

from __future__ import annotations

from selfimprove.modules import build_module
from selfimprove.registry import LoadedModel
from selfimprove.seeding import torch_seeded
from selfimprove.strategies._base import Candidate, Cost, StrategyContext
from selfimprove.strategies._train import TrainStrategy
from selfimprove.training import train_

__all__ = ["RetrainStrategy"]


class RetrainStrategy(TrainStrategy):
    """Train a freshly initialised copy of the incumbent's architecture.

    Accepts the same ``context.params`` overrides as ``train`` (``lr``, ``weight_decay``, ...).
    """

    name = "retrain"
    family = "training"

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        with torch_seeded(context.seed):
            module = build_module(context.task, incumbent.version.params)
        cfg = self.config(context)
        result = train_(module, context.task, cfg, check=context.check_budget)
        return Candidate(
            module=module,
            params=dict(incumbent.version.params),
            strategy=self.name,
            origin="fresh_init",
            details={
                "config": cfg.to_dict(),
                "epochs_run": result.epochs_run,
                "best_epoch": result.best_epoch,
                "stopped": result.stopped,
                "best_holdout_loss": result.best_holdout_loss,
            },
            cost=Cost(epochs=result.epochs_run, seconds=result.seconds),
        )
