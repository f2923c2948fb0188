"""`SelfImprovingNeuralSystem`: seed 000's self-improvement loop, with signals that are measured.

One cycle (``run_improvement_cycle``):

1. **observe** every incumbent (validation metrics and latency, recorded);
2. **plan** (:mod:`selfimprove.brain.planning`): weaknesses by the seed's rules; for each, the
   bandit picks a strategy among those serving its kind; priority = severity × impact × hormone
   multiplier × trigger boost × expected gain; one task per model, user tasks first;
3. **execute** the top ``max_concurrent_improvements`` tasks concurrently (distinct models)
   through the executor, each with a budget scaled by the hormones;
4. **learn** in task order: bandit reward = realised gain per compute second; trigger fitness;
   hormone events; a ``SelfImprovementMetrics`` row; hormones decay one cycle; triggers evolve
   every ``evolve_every`` cycles; the brain state is saved in the store.

The judge alone decides what is promoted; hormones, triggers and the bandit only choose what to
try and how much to spend.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import psutil
from torch import nn

from selfimprove.brain.hormones import HormoneEvent, HormoneSystemController
from selfimprove.brain.planning import (
    KINDS,
    ModelImprovementTask,
    Observation,
    TaskRules,
    Weakness,
    find_weaknesses,
    severity_level,
    strongest_by_task,
)
from selfimprove.brain.state import BrainStateAggregator
from selfimprove.brain.triggers import GeneticTriggerSystem
from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import (
    ConfigError,
    NotFoundError,
    SelfImproveError,
    TaskError,
)
from selfimprove.loop.executors import Executor, LocalExecutor
from selfimprove.loop.experiment import ExperimentOutcome
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.evaluation import Evaluation
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain_model import (
    GAIN_MODEL_NAME,
    ExperimentFacts,
    GainPredictor,
    compare_with_bandit,
    encode_features,
    experiment_facts,
    register_gain_model,
)
from selfimprove.meta.insights import record_comparison, update_insights
from selfimprove.store import (
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    Store,
    VersionRecord,
    utcnow,
)
from selfimprove.strategies import STRATEGIES, Budget
from selfimprove.tasks import resolve_task

__all__ = ["SelfImprovementMetrics", "SelfImprovingNeuralSystem", "health_report"]

logger = logging.getLogger(__name__)

#: Cycles between two generations of genetic triggers.
EVOLVE_EVERY = 3
#: Compute seconds below this count as this much (a 0.01 s experiment is not 100× as good).
MIN_REWARD_SECONDS = 0.5
#: Cycles of waiting after which a model's priority stops rising (fair share: each cycle a
#: model waits adds half of its base priority, so no weak model is starved for long; a model
#: never tried counts as having waited this long, so every model gets an early turn).
MAX_WAIT = 10
#: Finished experiments the health report looks back over.
HEALTH_WINDOW = 20


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


class SelfImprovingNeuralSystem:
    """The self-improving loop over a population of models.

    The first four arguments keep seed 000's signature; each may be ``None`` (the system builds
    its own, restored from the store when one was saved).

    Args:
        hormone_integration: Optional neural alternative of the hormone response (see
            :mod:`selfimprove.alternatives`); reported in status when given.
        genetic_system: The trigger population.
        hormone_system: The hormone controller.
        brain_state: The aggregator (built from the others when ``None``).
        home: Home folder (when ``improver`` is not given).
        config: Loop settings (when ``improver`` is not given).
        seed: Base seed of experiments, bandit draws and trigger evolution.
        improver: An existing :class:`SelfImprover` to drive.
        rules: Task-generation thresholds.
        executor: Where tasks run (default: a local pool of ``max_concurrent_improvements``).
    """

    def __init__(
        self,
        hormone_integration: Any = None,
        genetic_system: GeneticTriggerSystem | None = None,
        hormone_system: HormoneSystemController | None = None,
        brain_state: BrainStateAggregator | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        config: SelfImprovementConfig | None = None,
        seed: int = 0,
        improver: SelfImprover | None = None,
        rules: TaskRules | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.improver = improver or SelfImprover(home, config=config, seed=seed)
        self.config = self.improver.config
        self.store = self.improver.store
        self.seed = self.improver.seed
        self.rules = rules or TaskRules()
        self.hormone_integration = hormone_integration
        saved = self.store.load_state("hormones")
        self.hormone_system = hormone_system or (
            HormoneSystemController.from_dict(saved) if saved else HormoneSystemController()
        )
        saved = self.store.load_state("triggers")
        self.genetic_system = genetic_system or (
            GeneticTriggerSystem.from_dict(saved) if saved else GeneticTriggerSystem(seed=self.seed)
        )
        saved = self.store.load_state("bandit")
        self.bandit = StrategyBandit.from_dict(saved) if saved else StrategyBandit(self.seed)
        self.executor = executor or LocalExecutor(self.config.max_concurrent_improvements)
        self.brain_state = brain_state or BrainStateAggregator(
            self.store,
            self.hormone_system,
            self.genetic_system,
            queue=lambda: [t.to_dict() for t in self._custom],
            health=self._health_safe,
            api_calls=self._api_calls_last_minute,
        )
        self.iteration = self.store.max_cycle()
        self.total_improvements = sum(
            1 for e in self.store.list_experiments() if e.decision is Decision.PROMOTE
        )
        self.improvement_history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self.config.improvement_history_size
        )
        self.priority_source = "bandit"
        self.gain_comparison: dict[str, Any] | None = None
        self._gain_predictor: GainPredictor | None = None
        self._strategy_seconds: dict[str, float] = {}
        self._engine: Any = None
        if self.store.find_model(GAIN_MODEL_NAME) is not None:
            self._refresh_gain_model(register=True)
        self._custom: list[ModelImprovementTask] = []
        self.last_tasks: list[ModelImprovementTask] = []
        self.last_outcomes: list[ExperimentOutcome] = []
        self._unusable: dict[str, str] = {}
        self._api_calls: collections.deque[float] = collections.deque(maxlen=10_000)
        self._cycle_lock: asyncio.Lock | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------------ bookkeeping
    def _touch(self) -> None:
        self._api_calls.append(time.monotonic())

    def _api_calls_last_minute(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self._api_calls if now - t <= 60)

    @property
    def running(self) -> bool:
        """Whether the background loop is running."""
        return self._loop_task is not None and not self._loop_task.done()

    # ------------------------------------------------------------------ planning
    def _observe_all(
        self, models: list[str] | None = None
    ) -> tuple[dict[str, Observation], dict[str, Evaluation]]:
        obs: dict[str, Observation] = {}
        evals: dict[str, Evaluation] = {}
        self._unusable = {}
        records = (
            self.store.list_models()
            if models is None
            else [self.store.get_model(name) for name in models]
        )
        # Every incumbent evaluated, then all their measurements recorded in one transaction.
        observed, unusable = self.improver.loop.observe_many(records)
        for m in records:
            if m.name in unusable:
                exc = unusable[m.name]
                self.store.add_event("checkpoint_error", str(exc), model_id=m.id)
                logger.error("%s left alone: %s", m.name, exc)
                self._unusable[m.name] = str(exc)
        for inc, ev in observed:
            m = inc.model
            p = inc.task.primary
            obs[m.name] = Observation(
                model=m.name,
                task=m.task,
                family=m.family,
                primary=p,
                value=ev.value(p.name),
                latency_ms=ev.value("latency_ms"),
                version=inc.version.number,
            )
            evals[m.name] = ev
        return obs, evals

    def _strategies_for(self, kind: str) -> list[str]:
        return [s for s in self.rules.strategies.get(kind, ()) if s in STRATEGIES]

    def _history(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per model: cycles since its last experiment (never tried: absent), and how many
        training experiments in a row since its last promotion were not promoted."""
        names = {m.id: m.name for m in self.store.list_models()}
        last: dict[str, int] = {}
        stalled: dict[str, int] = {}
        finished = (ExperimentStatus.COMPLETED.value, ExperimentStatus.FAILED.value)
        for model_id, cycle, strategy, status, decision in self.store.experiment_outline():
            name = names.get(model_id or -1)
            if name is None:
                continue
            if cycle is not None:
                last[name] = max(last.get(name, 0), cycle)
            if decision == Decision.PROMOTE.value:
                stalled[name] = 0
            elif (
                status in finished
                and strategy in STRATEGIES
                and STRATEGIES[strategy].family == "training"
            ):
                stalled[name] = stalled.get(name, 0) + 1
        now = self.store.max_cycle() + 1
        return {name: now - c for name, c in last.items()}, stalled

    @staticmethod
    def _searchable(task_name: str) -> bool:
        """Whether the task has an architecture search space (what ``evolve`` needs)."""
        try:
            return resolve_task(task_name).search_space() is not None
        except SelfImproveError:
            return False

    def _task_for(
        self, w: Weakness, obs: Observation, env: dict[str, float], waiting: int = MAX_WAIT
    ) -> ModelImprovementTask | None:
        if w.kind == "architecture" and not self._searchable(obs.task):
            w = replace(
                w,
                kind="training",
                reason=f"{w.reason}; task {obs.task} offers no architecture search space",
            )
        arms = self._strategies_for(w.kind)
        if not arms:
            return None
        context = (w.kind, obs.family)
        strategy, _ = self.bandit.choose(
            context, arms, temperature=self.hormone_system.exploration() / 0.2
        )
        family = STRATEGIES[strategy].family
        severity = min(1.0, w.gap) if math.isfinite(w.gap) else 1.0
        _, impact = severity_level(w.gap)
        hormone = (
            self.hormone_system.priority_multiplier(w.kind) if self.config.hormone_driven else 1.0
        )
        boost, trigger_ids = (
            self.genetic_system.boost(family, env) if self.config.genetic_enhanced else (1.0, [])
        )
        est = self.bandit.expected(context, strategy)
        if self.priority_source == "gain_model" and self._gain_predictor is not None:
            est = self._predicted_reward(w, obs, strategy)
        expected = 1.0 + 10.0 * max(0.0, est)
        return ModelImprovementTask(
            model_id=obs.model,
            kind=w.kind,
            strategy=strategy,
            objective=w.objective,
            priority=severity * impact * hormone * boost * expected * (1 + 0.5 * waiting),
            reason=w.reason,
            severity=severity,
            impact=impact,
            hormone_multiplier=hormone,
            trigger_boost=boost,
            trigger_ids=tuple(trigger_ids),
            expected_gain=expected,
            waiting=waiting,
        )

    def plan(
        self, observations: dict[str, Observation], env: dict[str, float]
    ) -> list[ModelImprovementTask]:
        """Tasks for this cycle, highest priority first, at most one per model (pure given the
        observations, the environment and the brain state)."""
        peers = list(observations.values())
        best: dict[str, ModelImprovementTask] = {}
        waited, stalled = self._history()
        strongest = strongest_by_task(peers)
        for obs in peers:
            waiting = min(MAX_WAIT, waited.get(obs.model, MAX_WAIT))
            obs = replace(obs, training_stalled=stalled.get(obs.model, 0))
            for w in find_weaknesses(
                obs,
                peers,
                self.rules,
                distill=self.config.cross_model_distillation,
                best_by_task=strongest,
            ):
                task = self._task_for(w, obs, env, waiting)
                if task is not None and (
                    obs.model not in best or task.priority > best[obs.model].priority
                ):
                    best[obs.model] = task
        for custom in self._custom:  # the user's tasks replace the planned ones
            if custom.model_id in observations:
                best[custom.model_id] = custom
        return sorted(best.values(), key=lambda t: (-t.priority, t.model_id))

    async def generate_improvement_tasks(self) -> list[ModelImprovementTask]:
        """Observe every model and return this cycle's tasks, highest priority first."""
        self._touch()
        observations, _ = await asyncio.to_thread(self._observe_all)
        env = await asyncio.to_thread(self.brain_state.environment)
        return self.plan(observations, env)

    def custom_task(
        self,
        model_id: str,
        improvement_type: str = "training",
        priority: float = 1.0,
        *,
        strategy: str | None = None,
        objective: str | None = None,
    ) -> ModelImprovementTask:
        """A user's task, validated but not queued (see :meth:`add_custom_improvement_task`)."""
        model = self.store.get_model(model_id)
        if not priority > 0:
            raise ConfigError(f"priority must be > 0, but got {priority=}.")
        if improvement_type in STRATEGIES and strategy is None:
            strategy, kind = improvement_type, STRATEGIES[improvement_type].family
        elif improvement_type in KINDS:
            kind = improvement_type
        else:
            raise ConfigError(
                f"unknown improvement_type {improvement_type!r}; use one of {KINDS} "
                f"or a strategy ({', '.join(STRATEGIES)})."
            )
        if strategy is None:
            arms = self._strategies_for(kind)
            strategy, _ = self.bandit.choose((kind, model.family), arms)
        elif strategy not in STRATEGIES:
            raise NotFoundError(
                f"unknown strategy {strategy!r}; available: {', '.join(sorted(STRATEGIES))}."
            )
        if objective is None:
            objective = STRATEGIES[strategy].default_objective or ""
        return ModelImprovementTask(
            model_id=model_id,
            kind=kind,
            strategy=strategy,
            objective=objective,
            priority=float(priority),
            reason="added by the user",
            custom=True,
        )

    async def add_custom_improvement_task(
        self,
        model_id: str,
        improvement_type: str = "training",
        priority: float = 1.0,
        *,
        strategy: str | None = None,
        objective: str | None = None,
    ) -> ModelImprovementTask:
        """Queue a user's task; it runs in the next cycle ahead of the planned one.

        Args:
            model_id: The model's name.
            improvement_type: A kind (``training``, ``optimisation``, ``architecture``,
                ``distillation``) or a strategy name.
            priority: The user's priority (> 0).
            strategy: A strategy; default: the bandit's choice for the kind.
            objective: The objective; default: the strategy's own, else the task's primary.

        Raises:
            NotFoundError: Unknown model or strategy.
            ConfigError: Unknown kind, or a non-positive priority.
        """
        self._touch()
        task = self.custom_task(
            model_id, improvement_type, priority, strategy=strategy, objective=objective
        )
        self._custom = [t for t in self._custom if t.model_id != model_id] + [task]
        return task

    # ------------------------------------------------------------------ execution
    def _budget(self) -> Budget:
        scale = self.hormone_system.budget_multiplier() if self.config.hormone_driven else 1.0
        return Budget(
            epochs=max(1, round(self.config.train_epochs * scale)),
            seconds=self.config.train_seconds * scale,
        )

    def _execute(
        self, task: ModelImprovementTask, cycle: int, observation: Evaluation | None
    ) -> ExperimentOutcome:
        return self.improver.loop.improve(
            task.model_id,
            cycle=cycle,
            strategy=task.strategy,
            objective=task.objective or None,
            params=task.params,
            budget=self._budget(),
            only_below_target=not task.custom,
            observation=observation,
        )

    async def execute_improvement_task(
        self, task: ModelImprovementTask, *, cycle: int | None = None
    ) -> ExperimentOutcome:
        """Run one task now (a judged experiment) and learn from it."""
        self._touch()
        cycle = cycle if cycle is not None else self.store.max_cycle() + 1
        (outcome,) = await self.executor.map(lambda t: self._execute(t, cycle, None), [task])
        self._learn(task, outcome)
        self._save_brain()
        return outcome

    async def run_improvement_cycle(
        self, models: list[str] | None = None
    ) -> SelfImprovementMetrics | None:
        """One full cycle (see the module docstring); ``None`` when the system is disabled.

        Args:
            models: Only these models (default: all). Outcomes are in :attr:`last_outcomes`.
        """
        self._touch()
        if not self.config.enabled:
            logger.info("self-improvement is disabled (config.enabled=False): no cycle run")
            return None
        if self._cycle_lock is None:
            self._cycle_lock = asyncio.Lock()
        async with self._cycle_lock:
            return await self._cycle(models)

    async def _cycle(self, models: list[str] | None) -> SelfImprovementMetrics:
        await asyncio.to_thread(self.improver.loop.recover)
        cycle = self.store.max_cycle() + 1
        self.iteration = cycle
        observations, evals = await asyncio.to_thread(self._observe_all, models)
        for obs in observations.values():
            if obs.latency_ms > self.rules.latency_above_ms:
                self.hormone_system.on_event(HormoneEvent.LATENCY_MISSED)
        env = await asyncio.to_thread(self.brain_state.environment)
        active = (
            self.genetic_system.get_active_triggers(env) if self.config.genetic_enhanced else []
        )
        tasks = self.plan(observations, env)[: self.config.max_concurrent_improvements]
        self._custom = [t for t in self._custom if t.model_id not in {x.model_id for x in tasks}]
        logger.info(
            "cycle %d: %d task(s): %s",
            cycle,
            len(tasks),
            ", ".join(f"{t.model_id}:{t.strategy}({t.priority:.2f})" for t in tasks),
        )
        outcomes = await self.executor.map(
            lambda t: self._execute(t, cycle, evals.get(t.model_id)), tasks
        )
        self.last_tasks = tasks
        self.last_outcomes = list(outcomes) + [
            ExperimentOutcome(name, cycle, "", "", "skipped", None, reason)
            for name, reason in sorted(self._unusable.items())
        ]
        gains, seconds = [], []
        for task, outcome in zip(tasks, outcomes, strict=True):  # fixed order: deterministic
            gain, secs = self._learn(task, outcome)
            gains.append(gain)
            if secs is not None:
                seconds.append(secs)
        self.hormone_system.tick(1)
        if cycle % EVOLVE_EVERY == 0 and self.config.genetic_enhanced:
            self.genetic_system.evolve()
        metrics = SelfImprovementMetrics(
            iteration=cycle,
            models_improved=sum(o.promoted for o in outcomes),
            total_improvement=float(sum(gains)),
            best_performance_gain=float(max(gains, default=0.0)),
            average_training_time=float(sum(seconds) / len(seconds)) if seconds else 0.0,
            hormone_levels=self.hormone_system.get_hormone_levels(),
            genetic_activations=len(active),
            memory_usage=psutil.Process().memory_info().rss / 2**20,
            timestamp=utcnow(),
        )
        self.store.add_cycle_metrics(
            **asdict(metrics),
            extra={
                "tasks": [t.to_dict() for t in tasks],
                "outcomes": [
                    {"model": o.model, "status": o.status, "decision": o.decision} for o in outcomes
                ],
            },
        )
        self._learn_about_learning(cycle, metrics)
        if self.hormone_integration is not None and any(
            o.promoted and o.model == "hormone_response" for o in outcomes
        ):
            refresh = getattr(
                getattr(self.hormone_integration, "alternative", None), "refresh", None
            )
            if callable(refresh):
                await asyncio.to_thread(refresh)
        self._save_brain()
        return metrics

    # ------------------------------------------------------------------ meta-learning
    def _learn_about_learning(self, cycle: int, metrics: SelfImprovementMetrics) -> None:
        """Insights every cycle; the engine's weaknesses brought up to date and the cycle in its
        changelog; the gain model rebuilt every ``EVOLVE_EVERY`` cycles and compared with the
        bandit on held-out experiments (it decides priority only when significantly better)."""
        try:
            # The ledger's experiments read once for all of it (nothing below adds one).
            experiments = self.store.list_experiments()
            facts = experiment_facts(self.store, experiments)
            with self.store.batch():  # one transaction for every insight
                update_insights(self.store, experiments=experiments, facts=facts)
            self._feed_engine(cycle, metrics)
            if cycle % EVOLVE_EVERY == 0:
                self._refresh_gain_model(register=True, experiments=experiments, facts=facts)
            elif self._gain_predictor is not None:
                self._refresh_gain_model(register=False, experiments=experiments, facts=facts)
        except SelfImproveError as exc:  # learning about learning must never stop the loop
            logger.warning("meta-learning skipped this cycle: %s", exc)

    def _feed_engine(self, cycle: int, metrics: SelfImprovementMetrics) -> None:
        """One ledger: the seed-002 engine sees every model objective as a capability; here it
        opens and resolves weaknesses from this cycle's measurements and logs the cycle."""
        if self._engine is None:  # opened once, closed with the system
            from selfimprove.engine import SelfImprovementEngine

            self._engine = SelfImprovementEngine(
                self.store.engine.url.render_as_string(hide_password=False),
                home=self.improver.home,
            )
        engine = self._engine
        promoted = [o.experiment_id for o in self.last_outcomes if o.promoted and o.experiment_id]
        # One transaction for the whole update (a weakness per capability would otherwise be
        # a commit each): all of it or, when anything fails, none of it.
        with engine.store.batch():
            engine.analyze_weaknesses()
            engine.track_improvement_history(
                f"cycle-{cycle}",
                f"{metrics.models_improved} model(s) improved in cycle {cycle}",
                improvements=promoted,
                delta=metrics.total_improvement,
                changes=[f"{o.model}: {o.strategy} -> {o.status}" for o in self.last_outcomes],
            )

    def _refresh_gain_model(
        self,
        *,
        register: bool,
        experiments: list[ExperimentRecord] | None = None,
        facts: list[ExperimentFacts] | None = None,
    ) -> None:
        """Rebuild the gain model's task (and register its model) when ``register``, reload the
        predictor and compare it with the bandit; ``experiments`` and their ``facts`` when
        already read this cycle."""
        if experiments is None:
            experiments = self.store.list_experiments()
        if facts is None:
            facts = experiment_facts(self.store, experiments)
        if register:
            try:
                register_gain_model(self.improver, self.store, seed=self.seed, facts=facts)
            except TaskError as exc:  # too little history yet
                logger.debug("gain model not (re)built: %s", exc)
                return
        self._gain_predictor = GainPredictor.from_registry(self.improver.registry)
        secs: dict[str, list[float]] = collections.defaultdict(list)
        for e in experiments:
            if e.status is ExperimentStatus.COMPLETED and e.compute.get("seconds") is not None:
                secs[e.strategy].append(float(e.compute["seconds"]))
        self._strategy_seconds = {k: float(np.median(v)) for k, v in secs.items()}
        result = compare_with_bandit(
            self.store, self._gain_predictor, self.bandit, alpha=self.config.alpha, facts=facts
        )
        record_comparison(self.store, result)
        self.gain_comparison = result
        self.priority_source = str(result["decides"])

    def _predicted_reward(self, w: Weakness, obs: Observation, strategy: str) -> float:
        """The gain model's expected reward (gain per compute second) for a planned task."""
        assert self._gain_predictor is not None
        inc = self.improver.registry.incumbent(obs.model)
        gap = obs.primary.gap(obs.value) if obs.primary.target is not None else math.nan
        features = encode_features(
            strategy=strategy,
            kind=w.kind,
            family=obs.family,
            parameters=float(inc.metrics.get("parameters") or math.nan),
            gap=gap,
            epochs=float(self._budget().epochs),
            objective=w.objective,
        )
        gain = self._gain_predictor.predict(features)
        # Seconds it will take: the median of this strategy's past experiments.
        seconds = self._strategy_seconds.get(strategy, self.config.train_seconds)
        return gain / max(seconds, MIN_REWARD_SECONDS)

    def _learn(
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
            self.bandit.update(
                (task.kind, model.family), task.strategy, gain / max(secs, MIN_REWARD_SECONDS)
            )
            self.genetic_system.record_outcome(task.trigger_ids, gain)
            if outcome.promoted:
                self.total_improvements += 1
                self.hormone_system.on_event(HormoneEvent.PROMOTION, gain=gain)
            elif exp.status is ExperimentStatus.FAILED:
                self.hormone_system.on_event(HormoneEvent.FAILURE)
            else:
                self.hormone_system.on_event(HormoneEvent.REJECTION)
        self.improvement_history.append(
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

    def _save_brain(self) -> None:
        with self.store.batch():  # the three states together, in one transaction
            self._save_states()

    def _save_states(self) -> None:
        self.store.save_state("hormones", self.hormone_system.to_dict())
        self.store.save_state("triggers", self.genetic_system.to_dict())
        self.store.save_state("bandit", self.bandit.to_dict())

    async def save_improved_model(
        self,
        model_id: str,
        module: nn.Module,
        params: dict[str, Any],
        *,
        strategy: str = "external",
        metrics: dict[str, Any] | None = None,
    ) -> VersionRecord:
        """Save a model improved outside the loop as a *candidate* version of ``model_id``.

        It is not promoted: run ``improve`` or the loop to have it judged, or promote it by
        hand through the registry.
        """
        self._touch()
        model = self.store.get_model(model_id)
        parent = self.improver.registry.incumbent(model_id)
        return await asyncio.to_thread(
            self.improver.registry.save_version,
            model,
            module,
            params,
            parent=parent,
            strategy=strategy,
            origin="external",
            metrics=metrics or {},
        )

    # ------------------------------------------------------------------ the background loop
    async def initialize(self) -> None:
        """Register the built-in models into an empty store, serve the hormone response through
        its neural alternative (``HormoneNeuralIntegration``) when that model exists, and start
        the background loop when ``config.auto_start`` (and ``config.enabled``) say so."""
        self._touch()
        if not self.store.list_models():
            await asyncio.to_thread(self.improver.ensure_builtin_models)
        if self.hormone_integration is None and self.store.find_model("hormone_response"):
            from selfimprove.alternatives.builtin import HormoneNeuralIntegration

            self.hormone_integration = await asyncio.to_thread(
                HormoneNeuralIntegration.create,
                self.improver,
                hormone_system=self.hormone_system,
                seed=self.seed,
            )
        if self.config.auto_start and self.config.enabled:
            await self.start_self_improvement_loop()

    async def start_self_improvement_loop(self) -> None:
        """Run cycles every ``improvement_interval`` seconds in the background.

        Raises:
            ConfigError: The system is disabled (``config.enabled=False``).
        """
        self._touch()
        if not self.config.enabled:
            raise ConfigError(
                "self-improvement is disabled: set SelfImprovementConfig(enabled=True)."
            )
        if self.running:
            return
        self._stop = asyncio.Event()
        self._loop_task = asyncio.create_task(self._run_forever(), name="selfimprove-loop")

    async def _run_forever(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await self.run_improvement_cycle()
            except Exception:  # the loop must survive one bad cycle; the error is logged
                logger.exception("improvement cycle failed; the loop goes on")
            with contextlib.suppress(TimeoutError):  # the interval passed: next cycle
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.improvement_interval)

    async def stop_self_improvement_loop(self) -> None:
        """Stop the background loop after the cycle in progress, and release the workers."""
        self._touch()
        if self._stop is not None:
            self._stop.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        self.executor.close()

    async def force_improvement_cycle(self) -> SelfImprovementMetrics | None:
        """Run a cycle now, even while the background loop sleeps (never two at once)."""
        return await self.run_improvement_cycle()

    # ------------------------------------------------------------------ reports
    def health_report(self) -> dict[str, Any]:
        """Health from measured records (see :func:`health_report`)."""
        return health_report(self.store)

    def _health_safe(self) -> dict[str, Any]:
        return self.health_report()

    async def get_improvement_status(self) -> dict[str, Any]:
        """Status: iteration, counts, hormones, triggers, bandit, queue, health."""
        self._touch()
        snap = await asyncio.to_thread(self.brain_state.snapshot)
        return {
            "running": self.running,
            "enabled": self.config.enabled,
            "iteration": self.iteration,
            "total_improvements": self.total_improvements,
            "priority_source": self.priority_source,
            "gain_model_vs_bandit": self.gain_comparison,
            "hormone_integration": (
                self.hormone_integration.summary()
                if hasattr(self.hormone_integration, "summary")
                else type(self.hormone_integration).__name__
                if self.hormone_integration is not None
                else None
            ),
            "bandit": {
                f"{k}/{f}": self.bandit.estimates((k, f)) for k, f in self.bandit.contexts()
            },
            "recent": list(self.improvement_history)[-10:],
            "last_metrics": next(iter(self.store.list_cycle_metrics(limit=1)), None),
            **snap,
        }

    # ------------------------------------------------------------------ sync wrappers
    def run_cycle_sync(self, models: list[str] | None = None) -> SelfImprovementMetrics | None:
        """:meth:`run_improvement_cycle` for scripts and notebooks (no running event loop)."""
        return _run_sync(lambda: self.run_improvement_cycle(models))

    def generate_tasks_sync(self) -> list[ModelImprovementTask]:
        """:meth:`generate_improvement_tasks` for scripts."""
        return _run_sync(self.generate_improvement_tasks)

    def status_sync(self) -> dict[str, Any]:
        """:meth:`get_improvement_status` for scripts."""
        return _run_sync(self.get_improvement_status)

    def close(self) -> None:
        """Release the workers and the store."""
        self.executor.close()
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.improver.close()

    def __enter__(self) -> SelfImprovingNeuralSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def health_report(store: Store) -> dict[str, Any]:
    """Health from measured records (formulas in ``docs/architecture.md``).

    Over the last ``HEALTH_WINDOW`` finished experiments and cycles: efficiency = mean realised
    gain per experiment; stability = 1 - failed/finished; learning rate = mean total gain per
    cycle; overall = 0.4 min(1, efficiency/0.1) + 0.4 stability + 0.2 min(1, learning/0.1).
    """
    recent = [
        e
        for e in store.list_experiments(newest_first=True, limit=HEALTH_WINDOW)
        if e.status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    ]
    gains = []
    for e in recent:
        rel = e.statistics.get("relative_improvement") if e.decision is Decision.PROMOTE else 0
        gains.append(float(rel) if rel is not None and math.isfinite(rel) else 0.0)
    efficiency = sum(gains) / len(gains) if gains else 0.0
    failed = sum(e.status is ExperimentStatus.FAILED for e in recent)
    stability = 1.0 - failed / len(recent) if recent else 1.0
    metrics = store.list_cycle_metrics(limit=HEALTH_WINDOW)
    learning = sum(m["total_improvement"] for m in metrics) / len(metrics) if metrics else 0.0
    overall = 0.4 * min(1.0, efficiency / 0.1) + 0.4 * stability + 0.2 * min(1.0, learning / 0.1)
    return {
        "overall_health": overall,
        "improvement_efficiency": efficiency,
        "system_stability": stability,
        "learning_rate": learning,
        "window": len(recent),
        "cycles_considered": len(metrics),
    }


def _run_sync(fn: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(fn())
    raise ConfigError(
        "a sync wrapper was called inside a running event loop; await the async method instead."
    )
