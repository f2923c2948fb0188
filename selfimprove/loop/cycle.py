"""`ImprovementCycle`: the planned cycle, as data flows through it.

1. **observe** every incumbent (validation metrics and latency, recorded in one transaction);
   an incumbent measured before and unchanged since (same version, task and evaluator) is
   reused, and every ``observe_refresh_every``-th cycle loads and measures all afresh;
2. **plan** (:mod:`selfimprove.brain.planning`): weaknesses by the seed's rules; for each, the
   bandit picks a strategy among those serving its kind; priority = severity × impact × hormone
   multiplier × trigger boost × expected gain × fair-share wait; one task per model, the
   user's tasks first;
3. **execute** the top ``max_concurrent_improvements`` tasks (distinct models), each a judged
   experiment (:class:`~selfimprove.loop.experiment.ImprovementLoop`) with a budget scaled by
   the hormones: the driver plans and records them, the executor runs their strategies' work
   (:mod:`selfimprove.loop.work`: in this process, or on a Ray cluster), the driver judges and
   commits what comes back, in task order;
4. **learn** in task order (:mod:`selfimprove.loop.learning`): bandit reward = realised gain per
   compute second; trigger fitness; hormone events; a ``SelfImprovementMetrics`` row; insights,
   the engine's weaknesses and changelog, the gain model; hormones decay one cycle; triggers
   evolve every ``EVOLVE_EVERY`` cycles; the brain state is saved in the store.

The judge alone decides what is promoted; hormones, triggers and the bandit only choose what to
try and how much to spend. :class:`~selfimprove.loop.improver.SelfImprover` runs this cycle;
:class:`~selfimprove.loop.system.SelfImprovingNeuralSystem` adds seed 000's async lifecycle.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from selfimprove._malloc import limit_malloc_arenas, pin_mmap_threshold
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
from selfimprove.brain.streaks import unspent
from selfimprove.brain.triggers import GeneticTriggerSystem, Trigger
from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import ConfigError, NotFoundError, SelfImproveError
from selfimprove.loop.executors import Executor, executor_for
from selfimprove.loop.experiment import (
    ExperimentOutcome,
    ImprovementLoop,
    PreparedExperiment,
    ProgressCallback,
)
from selfimprove.loop.health import health_report
from selfimprove.loop.learning import (
    EVOLVE_EVERY,
    CycleLearner,
    SelfImprovementMetrics,
)
from selfimprove.loop.ledger_fold import PlanHistory
from selfimprove.measure.evaluation import Evaluation
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain import GAIN_MODEL_NAME, GainAdvisor
from selfimprove.registry import ModelHome
from selfimprove.strategies import STRATEGIES, Budget
from selfimprove.tasks import effective_search_space, is_external, resolve_task

__all__ = ["EVOLVE_EVERY", "MAX_WAIT", "ImprovementCycle", "SelfImprovementMetrics"]

logger = logging.getLogger(__name__)

#: Cycles of waiting after which a model's priority stops rising (fair share: each cycle a
#: model waits adds half of its base priority, so no weak model is starved for long; a model
#: never tried counts as having waited this long, so every model gets an early turn).
MAX_WAIT = 10


class ImprovementCycle:
    """The planned improvement cycle over a home's models, with its brain.

    The brain parts that are not given are restored from the store (``state`` table) when one
    was saved, else created fresh from ``seed``.

    Args:
        home: The models' home (a :class:`~selfimprove.loop.improver.SelfImprover`).
        loop: Runs one judged experiment.
        config: Loop settings.
        seed: Base seed of bandit draws and trigger evolution.
        hormone_system: The hormone controller.
        genetic_system: The trigger population.
        bandit: The strategy bandit.
        rules: Task-generation thresholds.
        executor: Where tasks run (default: a local pool of ``max_concurrent_improvements``).
        api_calls: Returns the number of API calls in the last minute (an environment input).
    """

    def __init__(
        self,
        home: ModelHome,
        loop: ImprovementLoop,
        config: SelfImprovementConfig,
        *,
        seed: int = 0,
        hormone_system: HormoneSystemController | None = None,
        genetic_system: GeneticTriggerSystem | None = None,
        bandit: StrategyBandit | None = None,
        rules: TaskRules | None = None,
        executor: Executor | None = None,
        api_calls: Callable[[], int] = lambda: 0,
    ) -> None:
        self.home = home
        self.loop = loop
        self.store = home.store
        self.config = config
        self.seed = seed
        if config.malloc_arenas is not None:  # flat memory over long runs (selfimprove._malloc)
            limit_malloc_arenas(config.malloc_arenas)
        if config.malloc_mmap_threshold_mib is not None:
            pin_mmap_threshold(config.malloc_mmap_threshold_mib)
        self.rules = rules or TaskRules()
        saved = self.store.load_state("hormones")
        self.hormone_system = hormone_system or (
            HormoneSystemController.from_dict(saved) if saved else HormoneSystemController()
        )
        saved = self.store.load_state("triggers")
        self.genetic_system = genetic_system or (
            GeneticTriggerSystem.from_dict(saved) if saved else GeneticTriggerSystem(seed=seed)
        )
        saved = self.store.load_state("bandit")
        self.bandit = bandit or (StrategyBandit.from_dict(saved) if saved else StrategyBandit(seed))
        self.executor = executor or executor_for(config)
        #: The user's tasks, run in the next cycle ahead of the planned ones.
        self.queue: list[ModelImprovementTask] = []
        self.brain_state = BrainStateAggregator(
            self.store,
            self.hormone_system,
            self.genetic_system,
            queue=lambda: [t.to_dict() for t in self.queue],
            health=lambda: health_report(self.store),
            api_calls=api_calls,
        )
        self.gain = GainAdvisor(home, seed=seed, alpha=config.alpha)
        self.learner = CycleLearner(
            home, config, self.hormone_system, self.genetic_system, self.bandit, self.gain
        )
        self.iteration = self.store.max_cycle()
        self.last_tasks: list[ModelImprovementTask] = []
        self.last_outcomes: list[ExperimentOutcome] = []
        self.unusable: dict[str, str] = {}
        #: Per model, the strategies that refused an incumbent version (``not_applicable``).
        self.refused: dict[str, dict[str, int]] = {}
        self._searchable: dict[tuple[str, int], bool] = {}
        self.plan_history = PlanHistory(self.store)
        self._observed: dict[str, tuple[Evaluation, Observation]] = {}
        #: Called with each cycle's outcomes after it is learnt from (e.g. to refresh a neural
        #: alternative whose model was just promoted).
        self.on_outcomes: Callable[[list[ExperimentOutcome]], None] | None = None
        #: The user's progress callback: ``("planned", {"cycle", "tasks", "budget"})`` when a
        #: cycle has chosen its experiments, ``("experiment", {"cycle", "outcome"})`` as each
        #: one is judged and committed. An exception it raises is logged, never propagated:
        #: the ledger's work does not stop for a display.
        self.progress: ProgressCallback | None = None
        if self.store.find_model(GAIN_MODEL_NAME) is not None:
            self.gain.refresh(self.bandit, register=True)

    @property
    def total_improvements(self) -> int:
        """Promotions in the ledger (this process's included)."""
        return self.learner.total_improvements

    @property
    def improvement_history(self) -> collections.deque[dict[str, Any]]:
        """The latest tasks and what became of them (``improvement_history_size`` kept)."""
        return self.learner.history

    # ------------------------------------------------------------------ observe
    def observe(
        self, models: list[str] | None = None, *, refresh: bool = True
    ) -> tuple[dict[str, Observation], dict[str, Evaluation]]:
        """Evaluate every incumbent (or ``models``) and record the measurements (``refresh``
        ``False``: an incumbent observed before and unchanged is reused, see
        :meth:`ImprovementLoop.observe_many`).

        Returns:
            The planner's observations and the evaluations, by model name; a model whose
            checkpoint cannot be used is left out, logged as an event and kept in
            :attr:`unusable` with the reason.
        """
        obs: dict[str, Observation] = {}
        evals: dict[str, Evaluation] = {}
        self.unusable = {}
        records = (
            [
                m
                for m in self.store.list_models()
                # a model another process is registering has no incumbent yet
                if not is_external(m.task) and m.incumbent_version_id is not None
            ]
            if models is None
            else [self.store.get_model(name) for name in models]
        )
        observed, unusable = self.loop.observe_many(records, refresh=refresh)
        for m in records:
            if m.name in unusable:
                exc = unusable[m.name]
                self.store.add_event("checkpoint_error", str(exc), model_id=m.id)
                logger.error("%s left alone: %s", m.name, exc)
                self.unusable[m.name] = str(exc)
        for inc, ev in observed:
            m, p = inc.model, inc.task.primary
            seen = self._observed.get(m.name)
            if seen is not None and seen[0] is ev:  # a reused evaluation: the same observation
                obs[m.name] = seen[1]
                evals[m.name] = ev
                continue
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
            self._observed[m.name] = (ev, obs[m.name])
        return obs, evals

    # ------------------------------------------------------------------ plan
    def strategies_for(self, kind: str) -> list[str]:
        """The registered strategies that serve a weakness ``kind``, in the rules' order."""
        return [s for s in self.rules.strategies.get(kind, ()) if s in STRATEGIES]

    def history(self) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, int]]]:
        """Per model: cycles since its last experiment (never tried: absent), how many
        training experiments in a row since its last promotion were not promoted, and per
        strategy how many of its experiments since then were not promoted
        (:func:`~selfimprove.brain.streaks.rejection_streaks`), folded from what is new
        (:class:`~selfimprove.loop.ledger_fold.PlanHistory`)."""
        last, stalled, streaks = self.plan_history.read()
        now = self.store.max_cycle() + 1
        waited = {name: now - c for name, c in last.items()}
        return waited, stalled, streaks

    def usable_arms(
        self, kind: str, obs: Observation, streaks: Mapping[str, int] | None = None
    ) -> list[str]:
        """The strategies serving ``kind`` that may apply to the model and still pay:
        ``evolve`` only on a task with a search space, none that said it does not apply to
        this very incumbent version (remembered by :meth:`remember_refusals`), and none the
        judge turned down :data:`~selfimprove.brain.streaks.REJECTION_LIMIT` times in a row on
        this model since its last promotion (``streaks``)."""
        refused = self.refused.get(obs.model, {})
        arms = [
            s
            for s in self.strategies_for(kind)
            if refused.get(s) != obs.version and (s != "evolve" or self.searchable(obs))
        ]
        kept, spent = unspent(arms, streaks or {})
        if spent:
            logger.info("%s: left out %s", obs.model, "; ".join(spent.values()))
        return kept

    def remember_refusals(self, outcomes: list[ExperimentOutcome]) -> None:
        """Remember which strategies refused which incumbent version (``not_applicable``), so
        the planner does not pick them again until the model has a new incumbent."""
        for o in outcomes:
            if o.status == "not_applicable" and o.version_before is not None:
                self.refused.setdefault(o.model, {})[o.strategy] = o.version_before

    def searchable(self, obs: Observation) -> bool:
        """Whether ``evolve`` has a space for this model: its task's own, or one inferred around
        the incumbent's params (:func:`~selfimprove.tasks.effective_search_space`); remembered
        per incumbent version."""
        key = (obs.model, obs.version)
        if key not in self._searchable:
            try:
                params = self.home.registry.incumbent(obs.model).params
                space, _ = effective_search_space(resolve_task(obs.task), params)
                self._searchable[key] = space is not None
            except SelfImproveError:
                self._searchable[key] = False
        return self._searchable[key]

    def served_by(
        self, w: Weakness, obs: Observation, streaks: Mapping[str, int] | None = None
    ) -> tuple[Weakness, list[str]]:
        """The strategies that may serve weakness ``w`` on this model (empty: none does, or
        every one that could was turned down too often on it: ``streaks``), and the weakness as
        served — turned to the other kind when none of its own kind applies or pays."""
        arms = self.usable_arms(w.kind, obs, streaks)
        if w.kind in ("architecture", "training") and not arms:
            other = "training" if w.kind == "architecture" else "architecture"
            why = (
                f"no architecture strategy applies to {obs.model} (task {obs.task} offers no "
                "search space and it cannot be grown) or pays any more"
                if w.kind == "architecture"
                else f"no training strategy pays on {obs.model} any more"
            )
            w = replace(w, kind=other, reason=f"{w.reason}; {why}")
            arms = self.usable_arms(w.kind, obs, streaks)
        return w, arms

    def _temperature(self) -> float:
        return self.hormone_system.exploration() / 0.2

    def task_for(
        self,
        w: Weakness,
        obs: Observation,
        env: dict[str, float],
        waiting: int = MAX_WAIT,
        streaks: Mapping[str, int] | None = None,
        active: Sequence[Trigger] | None = None,
    ) -> ModelImprovementTask | None:
        """The task serving weakness ``w`` with its priority (``None``: no strategy serves it,
        or every one that could was turned down too often on this model: ``streaks``)."""
        w, arms = self.served_by(w, obs, streaks)
        if not arms:
            return None
        strategy, _ = self.bandit.choose(
            (w.kind, obs.family), arms, temperature=self._temperature()
        )
        return self.priced(w, obs, strategy, env, waiting, active)

    def priced(
        self,
        w: Weakness,
        obs: Observation,
        strategy: str,
        env: dict[str, float],
        waiting: int = MAX_WAIT,
        active: Sequence[Trigger] | None = None,
    ) -> ModelImprovementTask:
        """The task of ``strategy`` serving ``w``, with its priority: severity × impact ×
        hormone × trigger boost × expected gain × fair-share wait."""
        context = (w.kind, obs.family)
        family = STRATEGIES[strategy].family
        severity = min(1.0, w.gap) if math.isfinite(w.gap) else 1.0
        _, impact = severity_level(w.gap)
        hormone = (
            self.hormone_system.priority_multiplier(w.kind) if self.config.hormone_driven else 1.0
        )
        boost, trigger_ids = (
            self.genetic_system.boost(family, env, active)
            if self.config.genetic_enhanced
            else (1.0, [])
        )
        est = self.bandit.expected(context, strategy)
        if self.gain.trusted:
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

    def _predicted_reward(self, w: Weakness, obs: Observation, strategy: str) -> float:
        inc = self.home.registry.incumbent(obs.model)
        return self.gain.predicted_reward(
            strategy=strategy,
            kind=w.kind,
            family=obs.family,
            parameters=float(inc.metrics.get("parameters") or math.nan),
            gap=obs.primary.gap(obs.value) if obs.primary.target is not None else math.nan,
            epochs=float(self.budget().epochs),
            objective=w.objective,
            default_epochs=float(self.budget().epochs),
        )

    def plan(
        self, observations: dict[str, Observation], env: dict[str, float]
    ) -> list[ModelImprovementTask]:
        """Tasks for this cycle, highest priority first, at most one per model (pure given the
        observations, the environment and the brain state)."""
        peers = list(observations.values())
        waited, stalled, streaks = self.history()
        strongest = strongest_by_task(peers)
        active = self.genetic_system.get_active_triggers(env)  # the same for every model
        served: list[tuple[Weakness, Observation, int]] = []
        groups: dict[tuple[tuple[str, str], tuple[str, ...]], list[int]] = {}
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
                w, arms = self.served_by(w, obs, streaks.get(obs.model, {}))
                if arms:
                    key = ((w.kind, obs.family), tuple(arms))
                    groups.setdefault(key, []).append(len(served))
                    served.append((w, obs, waiting))
        # One Thompson draw per weakness, drawn together for each (context, arms) in the order
        # first met (the same observations and brain state: the same draws).
        chosen: dict[int, str] = {}
        for (context, options), members in groups.items():
            picks = self.bandit.choose_many(
                context, options, len(members), temperature=self._temperature()
            )
            chosen.update(zip(members, picks, strict=True))
        best: dict[str, ModelImprovementTask] = {}
        for i, (w, obs, waiting) in enumerate(served):
            task = self.priced(w, obs, chosen[i], env, waiting, active)
            if obs.model not in best or task.priority > best[obs.model].priority:
                best[obs.model] = task
        for custom in self.queue:  # the user's tasks replace the planned ones
            if custom.model_id in observations:
                best[custom.model_id] = custom
        return sorted(best.values(), key=lambda t: (-t.priority, t.model_id))

    def custom_task(
        self,
        model_id: str,
        improvement_type: str = "training",
        priority: float = 1.0,
        *,
        strategy: str | None = None,
        objective: str | None = None,
    ) -> ModelImprovementTask:
        """A user's task, validated but not queued (see :meth:`enqueue`).

        Raises:
            NotFoundError: Unknown model or strategy.
            ConfigError: Unknown kind, or a non-positive priority.
        """
        model = self.store.get_model(model_id)
        if not 0 < priority < math.inf:  # also refuses NaN
            raise ConfigError(f"priority must be a finite number > 0, but got {priority=}.")
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
            strategy, _ = self.bandit.choose((kind, model.family), self.strategies_for(kind))
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

    def enqueue(self, task: ModelImprovementTask) -> None:
        """Run ``task`` in the next cycle, in place of the model's planned task."""
        self.queue = [t for t in self.queue if t.model_id != task.model_id] + [task]

    # ------------------------------------------------------------------ execute
    def budget(self) -> Budget:
        """One experiment's budget: the configured one, scaled by the hormones."""
        scale = self.hormone_system.budget_multiplier() if self.config.hormone_driven else 1.0
        return Budget(
            epochs=max(1, round(self.config.train_epochs * scale)),
            seconds=self.config.train_seconds * scale,
        )

    def prepare(
        self, task: ModelImprovementTask, cycle: int, observation: Evaluation | None = None
    ) -> PreparedExperiment | ExperimentOutcome:
        """Plan ``task``'s experiment and record it as running (on the driver)."""
        return self.loop.prepare(
            task.model_id,
            cycle=cycle,
            strategy=task.strategy,
            objective=task.objective or None,
            params=task.params,
            budget=self.budget(),
            only_below_target=not task.custom,
            observation=observation,
        )

    async def execute_all(
        self,
        tasks: list[ModelImprovementTask],
        cycle: int,
        observations: Mapping[str, Evaluation] | None = None,
    ) -> list[ExperimentOutcome]:
        """Run ``tasks`` as judged experiments: the driver plans and records each, in task
        order; the executor runs their strategies' work (here, or on a cluster); the driver
        judges and commits what comes back, in task order again."""
        seen = observations or {}
        prepared = [
            await asyncio.to_thread(self.prepare, t, cycle, seen.get(t.model_id)) for t in tasks
        ]
        ready = [p for p in prepared if isinstance(p, PreparedExperiment)]
        results = iter(await self.executor.run([p.work for p in ready]))
        outcomes = []
        for p in prepared:
            if isinstance(p, PreparedExperiment):
                p = await asyncio.to_thread(self.loop.finish, p, next(results))
            outcomes.append(p)
            self.report("experiment", {"cycle": cycle, "outcome": p})
        return outcomes

    def report(self, event: str, data: dict[str, Any]) -> None:
        """Hand ``(event, data)`` to :attr:`progress`, if set (its errors are only logged)."""
        if self.progress is None:
            return
        try:
            self.progress(event, data)
        except Exception:  # a display must not stop the loop half-way through a cycle
            logger.warning("the progress callback failed on %r; going on", event, exc_info=True)

    async def run_task(
        self, task: ModelImprovementTask, *, cycle: int | None = None
    ) -> ExperimentOutcome:
        """Run one task now and learn from it (outside a full cycle)."""
        cycle = cycle if cycle is not None else self.store.max_cycle() + 1
        (outcome,) = await self.execute_all([task], cycle)
        self.learner.learn(task, outcome)
        self.learner.save_brain()
        return outcome

    # ------------------------------------------------------------------ one cycle
    async def run(self, models: list[str] | None = None) -> SelfImprovementMetrics:
        """One full cycle (see the module docstring).

        Args:
            models: Only these models (default: all). Outcomes are in :attr:`last_outcomes`.
        """
        await asyncio.to_thread(self.loop.recover)
        cycle = self.store.max_cycle() + 1
        self.iteration = cycle
        every = self.config.observe_refresh_every
        refresh = every == 1 or cycle % every == 1
        observations, evals = await asyncio.to_thread(
            functools.partial(self.observe, models, refresh=refresh)
        )
        for obs in observations.values():
            if obs.latency_ms > self.rules.latency_above_ms:
                self.hormone_system.on_event(HormoneEvent.LATENCY_MISSED)
        env = await asyncio.to_thread(self.brain_state.environment)
        active = (
            self.genetic_system.get_active_triggers(env) if self.config.genetic_enhanced else []
        )
        tasks = self.plan(observations, env)[: self.config.max_concurrent_improvements]
        chosen = {t.model_id for t in tasks}
        self.queue = [t for t in self.queue if t.model_id not in chosen]
        logger.info(
            "cycle %d: %d task(s): %s",
            cycle,
            len(tasks),
            ", ".join(f"{t.model_id}:{t.strategy}({t.priority:.2f})" for t in tasks),
        )
        budget = {"epochs": self.config.train_epochs, "seconds": self.config.train_seconds}
        self.report(
            "planned",
            {
                "cycle": cycle,
                "tasks": [{"model": t.model_id, "strategy": t.strategy} for t in tasks],
                "budget": budget,
            },
        )
        outcomes = await self.execute_all(tasks, cycle, evals)
        self.last_tasks = tasks
        self.remember_refusals(list(outcomes))
        self.last_outcomes = list(outcomes) + [
            ExperimentOutcome(name, cycle, "", "", "skipped", None, reason)
            for name, reason in sorted(self.unusable.items())
        ]
        metrics = self.learner.learn_cycle(
            cycle, tasks, list(outcomes), active=len(active), reported=self.last_outcomes
        )
        if self.on_outcomes is not None:
            await asyncio.to_thread(self.on_outcomes, list(outcomes))
        self.learner.save_brain()
        return metrics

    def close(self) -> None:
        """Release the workers and the engine the learner opened."""
        self.executor.close()
        self.learner.close()
