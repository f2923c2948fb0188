"""The gain model as the planner's adviser: rebuilt from the ledger, measured against the bandit,
and trusted for priorities only while it is significantly better (see :mod:`selfimprove.meta.gain`).
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from selfimprove.errors import TaskError
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain.features import (
    ExperimentFacts,
    encode_features,
    experiment_facts,
    reward_cost,
)
from selfimprove.meta.gain.predictor import GainPredictor, compare_with_bandit
from selfimprove.meta.gain.task import register_gain_model
from selfimprove.meta.insights import record_comparison
from selfimprove.registry import ModelHome

__all__ = ["GainAdvisor"]

logger = logging.getLogger(__name__)


class GainAdvisor:
    """Keeps the gain predictor, its comparison with the bandit, and who decides priorities.

    Args:
        home: Where the gain model is registered (and improved by the loop like any model).
        seed: Seeds the first gain model.
        alpha: Significance the gain model must reach against the bandit to decide.
    """

    def __init__(self, home: ModelHome, *, seed: int, alpha: float | None) -> None:
        self.home = home
        self.seed = seed
        self.alpha = alpha
        self.predictor: GainPredictor | None = None
        self.comparison: dict[str, object] | None = None
        #: ``"bandit"`` or ``"gain_model"``: whose expected reward sets planned priorities.
        self.decides = "bandit"
        self._strategy_epochs: dict[str, float] = {}

    @property
    def trusted(self) -> bool:
        """Whether planned priorities use the gain model's predictions."""
        return self.decides == "gain_model" and self.predictor is not None

    def refresh(
        self,
        bandit: StrategyBandit,
        *,
        register: bool,
        facts: list[ExperimentFacts] | None = None,
    ) -> None:
        """Rebuild the gain task (and register its model) when ``register``, reload the
        predictor and compare it with ``bandit``, on ``facts`` (default: every finished
        experiment of the ledger; the system passes its newest ones). Too little history leaves
        everything as it was."""
        store = self.home.store
        if facts is None:
            facts = experiment_facts(store)
        if register:
            try:
                register_gain_model(self.home, store, seed=self.seed, facts=facts)
            except TaskError as exc:  # too little history yet
                logger.debug("gain model not (re)built: %s", exc)
                return
        self.predictor = GainPredictor.from_registry(self.home.registry)
        spent: dict[str, list[float]] = collections.defaultdict(list)
        for f in facts:
            if not f.failed and f.epochs_spent > 0:
                spent[f.strategy].append(f.epochs_spent)
        self._strategy_epochs = {k: float(np.median(v)) for k, v in spent.items()}
        result = compare_with_bandit(store, self.predictor, bandit, alpha=self.alpha, facts=facts)
        record_comparison(store, result)
        self.comparison = result
        self.decides = str(result["decides"])

    def predicted_reward(
        self,
        *,
        strategy: str,
        kind: str,
        family: str,
        parameters: float,
        gap: float,
        epochs: float,
        objective: str,
        default_epochs: float,
    ) -> float:
        """Expected reward (gain per :func:`reward_cost`) of a planned task.

        The cost is that of the median epochs the strategy's past experiments spent
        (``default_epochs`` when it has none), as the bandit's rewards are.

        Raises:
            TaskError: No predictor loaded yet (call :meth:`refresh` first).
        """
        if self.predictor is None:
            raise TaskError("the gain model is not loaded yet; call GainAdvisor.refresh first.")
        features = encode_features(
            strategy=strategy,
            kind=kind,
            family=family,
            parameters=parameters,
            gap=gap,
            epochs=epochs,
            objective=objective,
        )
        gain = self.predictor.predict(features)
        return gain / reward_cost(self._strategy_epochs.get(strategy, default_epochs))
