"""``retrain``: fresh initialisation, same architecture, trained from scratch within the budget.

Warm-started training cannot leave a bad minimum; a new seeded initialisation can. The
candidate has the incumbent's architecture params and none of its weights.
"""

from __future__ import annotations

from selfimprove.measure.training import train_
from selfimprove.nn.modules import arch_params, build_module
from selfimprove.objectives import EFFICIENCY_OBJECTIVES
from selfimprove.registry import LoadedModel
from selfimprove.seeding import torch_seeded
from selfimprove.strategies._base import Candidate, Cost, StrategyContext
from selfimprove.strategies._train import DATA_OBJECTIVES_ONLY, TrainStrategy

__all__ = ["RetrainStrategy"]


class RetrainStrategy(TrainStrategy):
    """Train a freshly initialised copy of the incumbent's architecture.

    Accepts the same ``context.params`` overrides as ``train`` (``lr``, ``weight_decay``, ...).
    """

    name = "retrain"
    family = "training"

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        # Unlike ``train``, a quantized incumbent is fine: the candidate is a fresh float model
        # of the same architecture (the way back from int8 when accuracy matters again).
        self.check_params(context.params, context.budget)
        if context.objective in EFFICIENCY_OBJECTIVES:
            return DATA_OBJECTIVES_ONLY.format(objective=context.objective)
        return None

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        params = arch_params(incumbent.version.params)
        with torch_seeded(context.seed):
            module = build_module(context.task, params)
        cfg = self.config(context)
        result = train_(module, context.task, cfg, check=context.check_budget)
        return Candidate(
            module=module,
            params=params,
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
