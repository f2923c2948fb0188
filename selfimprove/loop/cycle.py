"""`ImprovementCycle`: the planned cycle, as data flows through it.

1. **observe** every incumbent (validation metrics and latency, recorded in one transaction);
   an incumbent measured before and unchanged since (same version, task and evaluator) is
   reused, and every ``observe_refresh_every``-th cycle loads and measures all afresh;
2. **plan** (:class:`~selfimprove.loop.planner.Planner`, by
   :mod:`selfimprove.brain.planning`'s rules): weaknesses by the seed's rules; for each, the
   bandit picks a strategy among those serving its kind; priority = severity × impact × hormone
   multiplier × trigger boost × expected gain × fair-share wait; one task per model, the
   user's tasks first;
3. **execute** the top ``max_concurrent_improvements`` tasks (distinct models), each a judged
   experiment (:class:`~selfimprove.loop.experiment.ImprovementLoop`) with a budget scaled by
   the hormones: the driver plans and records them, the executor runs their strategies' work
   (:mod:`selfimprove.loop.work`: in this process, or on a Ray cluster), the driver judges and
   commits what comes back, in task order;
4. **learn** in task order (:mod:`selfimprove.loop.learning`): bandit reward = realised gain per
   compute second; trigger fitness; hormone events; hormones decay one cycle; triggers evolve
   every ``EVOLVE_EVERY`` cycles; a ``SelfImprovementMetrics`` row and the brain state saved in
   one transaction; then insights, the engine's weaknesses and changelog, the gain model.

The judge alone decides what is promoted; hormones, triggers and the bandit only choose what to
try and how much to spend. :class:`~selfimprove.loop.improver.SelfImprover` runs this cycle;
:class:`~selfimprove.loop.system.SelfImprovingNeuralSystem` adds seed 000's async lifecycle.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from selfimprove._malloc import limit_malloc_arenas, pin_mmap_threshold
from selfimprove.brain.hormones import HormoneEvent, HormoneSystemController
from selfimprove.brain.planning import (
    ModelImprovementTask,
    Observation,
    TaskRules,
)
from selfimprove.brain.state import BrainStateAggregator
from selfimprove.brain.triggers import GeneticTriggerSystem
from selfimprove.config import SelfImprovementConfig
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
from selfimprove.loop.planner import Planner
from selfimprove.measure.evaluation import Evaluation
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain import GAIN_MODEL_NAME, GainAdvisor
from selfimprove.registry import ModelHome
from selfimprove.store import ModelRecord
from selfimprove.strategies import Budget
from selfimprove.tasks import is_external

__all__ = ["EVOLVE_EVERY", "ImprovementCycle", "SelfImprovementMetrics"]

logger = logging.getLogger(__name__)


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
        self.brain_state = BrainStateAggregator(
            self.store,
            self.hormone_system,
            self.genetic_system,
            queue=lambda: [t.to_dict() for t in self.planner.queue],
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
        #: Plans each cycle's tasks (and holds the user's queued ones).
        self.planner = Planner(
            store=self.store,
            registry=home.registry,
            config=config,
            rules=self.rules,
            hormone_system=self.hormone_system,
            genetic_system=self.genetic_system,
            bandit=self.bandit,
            gain=self.gain,
            budget=self.budget,
        )
        self._observed: dict[str, tuple[Evaluation, Observation]] = {}
        #: The ledger's models as last read, by id (see :meth:`_current_models`).
        self._models: dict[int, ModelRecord] = {}
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
                for m in self._current_models()
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

    def _current_models(self) -> list[ModelRecord]:
        """Every model of the ledger, oldest first: the records read before, and read again
        only for the models that are new or whose incumbent changed since (a model's name,
        task and family never change; :meth:`~selfimprove.store.Store.model_heads` tells)."""
        heads = self.store.model_heads()
        known = self._models
        stale = [
            i
            for i, name, inc in heads
            if (m := known.get(i)) is None or m.name != name or m.incumbent_version_id != inc
        ]
        if stale:
            # by ids while few (a query's parameters are bounded), else all of them
            fresh = self.store.list_models(ids=stale if len(stale) <= 500 else None)
            known.update((m.id, m) for m in fresh)
        if len(known) != len(heads):  # a model is gone from the ledger
            self._models = known = {i: known[i] for i, _, _ in heads}
        return [known[i] for i, _, _ in heads]

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
        tasks = self.planner.plan(observations, env, limit=self.config.max_concurrent_improvements)
        chosen = {t.model_id for t in tasks}
        self.planner.queue = [t for t in self.planner.queue if t.model_id not in chosen]
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
        self.planner.remember_refusals(list(outcomes))
        self.last_outcomes = list(outcomes) + [
            ExperimentOutcome(name, cycle, "", "", "skipped", None, reason)
            for name, reason in sorted(self.unusable.items())
        ]
        metrics = self.learner.learn_cycle(
            cycle, tasks, list(outcomes), active=len(active), reported=self.last_outcomes
        )
        if self.on_outcomes is not None:
            await asyncio.to_thread(self.on_outcomes, list(outcomes))
        return metrics

    def close(self) -> None:
        """Release the workers and the engine the learner opened."""
        self.executor.close()
        self.learner.close()
