"""What a cycle learns, in task order: bandit rewards, trigger fitness, hormone events, the
cycle's ``SelfImprovementMetrics`` row, and learning about learning (insights, the engine's
weaknesses and changelog, the gain model). None of it changes what the judge decided.
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psutil

from selfimprove.brain.hormones import HormoneEvent, HormoneSystemController
from selfimprove.brain.planning import ModelImprovementTask
from selfimprove.brain.triggers import GeneticTriggerSystem
from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import SelfImproveError
from selfimprove.loop.experiment import ExperimentOutcome
from selfimprove.loop.ledger_fold import ExperimentFeed
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain import GainAdvisor, experiment_facts, reward_cost
from selfimprove.meta.gain.features import ExperimentFacts
from selfimprove.meta.insights import InsightBook, fold_into, write_insights
from selfimprove.registry import ModelHome
from selfimprove.store import Decision, ExperimentStatus, utcnow

if TYPE_CHECKING:
    from selfimprove.engine import SelfImprovementEngine

__all__ = ["EVOLVE_EVERY", "GAIN_WINDOW", "CycleLearner", "SelfImprovementMetrics"]

logger = logging.getLogger(__name__)

#: Cycles between two generations of genetic triggers (and two rebuilds of the gain model).
EVOLVE_EVERY = 3
#: The newest finished experiments the gain model learns from and is compared on.
GAIN_WINDOW = 2000


@dataclass(frozen=True)
class SelfImprovementMetrics:
    """One cycle's figures (seed 000's fields), stored in ``cycle_metrics``."""

    iteration: int
    models_improved: int
    total_improvement: float
    best_performance_gain: float
    average_training_time: float
    hormone_levels: dict[str, float]
    genetic_activations: int
    memory_usage: float  # resident memory of this process, MiB
    timestamp: datetime


class CycleLearner:
    """Feeds outcomes to the brain and the ledger's learners, and saves the brain.

    Args:
        home: The models' home (its store is the ledger).
        config: Loop settings (``hormone_driven``, ``genetic_enhanced``, history size).
        hormones: The hormone controller.
        triggers: The genetic trigger system.
        bandit: The strategy bandit.
        gain: The gain model's adviser.
    """

    def __init__(
        self,
        home: ModelHome,
        config: SelfImprovementConfig,
        hormones: HormoneSystemController,
        triggers: GeneticTriggerSystem,
        bandit: StrategyBandit,
        gain: GainAdvisor,
    ) -> None:
        self.home = home
        self.store = home.store
        self.config = config
        self.hormones = hormones
        self.triggers = triggers
        self.bandit = bandit
        self.gain = gain
        self.total_improvements = self.store.count_experiments(decision=Decision.PROMOTE.value)
        self.history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=config.improvement_history_size
        )
        self._engine: SelfImprovementEngine | None = None
        # Learning about learning folds only what each cycle adds (selfimprove.loop.ledger_fold)
        self._feed = ExperimentFeed(self.store)
        self._book = InsightBook()
        #: The newest finished experiments' facts: what the gain model learns from.
        self.recent_facts: collections.deque[ExperimentFacts] = collections.deque(
            maxlen=GAIN_WINDOW
        )
        self._measured = 0  # the newest measurement the engine's weaknesses have seen

    @property
    def engine(self) -> SelfImprovementEngine | None:
        """The seed-002 engine fed each cycle, over this very store (``None`` before the first)."""
        return self._engine

    def learn(
        self, task: ModelImprovementTask, outcome: ExperimentOutcome
    ) -> tuple[float, float | None]:
        """Feed one outcome to the bandit, the triggers, the hormones and the history.

        Returns:
            The realised gain (0 unless promoted) and the compute seconds (``None`` when no
            experiment ran).
        """
        gain, secs = 0.0, None
        if outcome.experiment_id is not None:
            exp = self.store.get_experiment(outcome.experiment_id)
            secs = float(exp.compute.get("seconds") or exp.durations.get("strategy_s") or 0.0)
            if outcome.promoted:
                rel = exp.statistics.get("relative_improvement")
                gain = float(rel) if rel is not None and math.isfinite(rel) else 0.0
            model = self.store.get_model(task.model_id)
            # Gain per epochs spent, never per second: the same seed, the same decisions.
            cost = reward_cost(float(exp.compute.get("epochs") or 0.0))
            self.bandit.update((task.kind, model.family), task.strategy, gain / cost)
            self.triggers.record_outcome(task.trigger_ids, gain)
            if outcome.promoted:
                self.total_improvements += 1
                self.hormones.on_event(HormoneEvent.PROMOTION, gain=gain)
            elif exp.status is ExperimentStatus.FAILED:
                self.hormones.on_event(HormoneEvent.FAILURE)
            else:
                self.hormones.on_event(HormoneEvent.REJECTION)
        self.history.append(
            {
                "cycle": outcome.cycle,
                "model": outcome.model,
                "kind": task.kind,
                "strategy": task.strategy,
                "priority": task.priority,
                "status": outcome.status,
                "decision": outcome.decision.value if outcome.decision else None,
                "gain": gain,
                "reason": outcome.reason,
            }
        )
        return gain, secs

    def learn_cycle(
        self,
        cycle: int,
        tasks: list[ModelImprovementTask],
        outcomes: list[ExperimentOutcome],
        *,
        active: int,
        reported: list[ExperimentOutcome],
    ) -> SelfImprovementMetrics:
        """Learn from a cycle's outcomes in task order (deterministic), tick the hormones,
        evolve the triggers when due, record the cycle's metrics with the brain's state (one
        transaction) and learn about learning.

        Args:
            cycle: The cycle number.
            tasks: The tasks run, in order.
            outcomes: Their outcomes, in the same order.
            active: Triggers active when the cycle was planned.
            reported: Every outcome of the cycle (skipped models included), for the changelog.
        """
        gains, seconds = [], []
        for task, outcome in zip(tasks, outcomes, strict=True):
            gain, secs = self.learn(task, outcome)
            gains.append(gain)
            if secs is not None:
                seconds.append(secs)
        self.hormones.tick(1)
        if cycle % EVOLVE_EVERY == 0 and self.config.genetic_enhanced:
            self.triggers.evolve()
        metrics = SelfImprovementMetrics(
            iteration=cycle,
            models_improved=sum(o.promoted for o in outcomes),
            total_improvement=float(sum(gains)),
            best_performance_gain=float(max(gains, default=0.0)),
            average_training_time=float(sum(seconds) / len(seconds)) if seconds else 0.0,
            hormone_levels=self.hormones.get_hormone_levels(),
            genetic_activations=active,
            memory_usage=psutil.Process().memory_info().rss / 2**20,
            timestamp=utcnow(),
        )
        with self.store.batch():  # the cycle's row and the brain it leaves, together
            self.store.add_cycle_metrics(
                **asdict(metrics),
                extra={
                    "tasks": [t.to_dict() for t in tasks],
                    "outcomes": [
                        {"model": o.model, "status": o.status, "decision": o.decision}
                        for o in outcomes
                    ],
                },
            )
            self.save_brain()
        self.learn_about_learning(cycle, metrics, reported)
        return metrics

    def learn_about_learning(
        self, cycle: int, metrics: SelfImprovementMetrics, outcomes: list[ExperimentOutcome]
    ) -> None:
        """Insights from the experiments finished since the last cycle; the engine's weaknesses
        of the capabilities measured since then and the cycle in its changelog; every
        ``EVOLVE_EVERY`` cycles the gain model rebuilt from the newest :data:`GAIN_WINDOW`
        finished experiments and compared with the bandit on them (it decides priority only
        when significantly better). Each cycle reads what is new, not the whole ledger."""
        try:
            self.fold_new_experiments()
            self.feed_engine(cycle, metrics, outcomes)
            if cycle % EVOLVE_EVERY == 0:
                self.gain.refresh(self.bandit, register=True, facts=list(self.recent_facts))
        except SelfImproveError as exc:  # learning about learning must never stop the loop
            logger.warning("meta-learning skipped this cycle: %s", exc)

    def fold_new_experiments(self) -> None:
        """Fold the experiments finished since the last call into the insights (writing only
        the insights they change, in one transaction) and the gain model's window."""
        touched: set[tuple[str, str]] = set()
        for page in self._feed.new():
            facts = experiment_facts(self.store, page)
            touched |= fold_into(self._book, self.store, page, facts)
            self.recent_facts.extend(facts)
        if touched:
            with self.store.batch():  # one transaction for every insight
                write_insights(self.store, self._book.insights(touched))

    def feed_engine(
        self, cycle: int, metrics: SelfImprovementMetrics, outcomes: list[ExperimentOutcome]
    ) -> None:
        """One ledger: the seed-002 engine sees every model objective as a capability; here it
        opens and resolves weaknesses from this cycle's measurements and logs the cycle."""
        if self._engine is None:  # opened once, over this very store; closed with the learner
            # Imported on first use: commands that never run a cycle need not load the engine.
            from selfimprove.engine import SelfImprovementEngine

            self._engine = SelfImprovementEngine(store=self.store, home=self.home.registry.home)
        engine = self._engine
        promoted = [o.experiment_id for o in outcomes if o.promoted and o.experiment_id]
        measured, newest = self.store.measured_since(self._measured)
        # One transaction for the whole update (a weakness per capability would otherwise be
        # a commit each): all of it or, when anything fails, none of it.
        with engine.store.batch():
            # every capability the first time, then those measured since
            engine.weaknesses.update_all(None if self._measured == 0 else measured)
            engine.track_improvement_history(
                f"cycle-{cycle}",
                f"{metrics.models_improved} model(s) improved in cycle {cycle}",
                improvements=promoted,
                delta=metrics.total_improvement,
                changes=[f"{o.model}: {o.strategy} -> {o.status}" for o in outcomes],
            )
        self._measured = newest

    def save_brain(self) -> None:
        """Hormones, triggers and bandit saved together, in one transaction."""
        with self.store.batch():
            self.store.save_state("hormones", self.hormones.to_dict())
            self.store.save_state("triggers", self.triggers.to_dict())
            self.store.save_state("bandit", self.bandit.to_dict())

    def close(self) -> None:
        """Close the engine this learner opened."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
