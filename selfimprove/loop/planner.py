"""`Planner`: a cycle's tasks from its observations, the environment and the brain.

For every observed model: its weaknesses by the seed's rules
(:func:`~selfimprove.brain.planning.find_weaknesses`), the strategies that may serve each (those
of its kind that apply to the incumbent and have not been turned down too often on it), and
for each weakness a strategy drawn by the bandit; priority = severity × impact × hormone
multiplier × trigger boost × expected gain × fair-share wait; one task per model, the user's
tasks (:attr:`Planner.queue`) first.

A model's served weaknesses are remembered until what they depend on changes, and the brain's
part of a priority is computed once per kind, strategy family and bandit context: at 10,000
models a plan takes about 0.05 s (:meth:`Planner.plan`; benchmarks/overhead, full mode). The
planner decides what to try and how urgently; the judge alone decides what is promoted.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from selfimprove.brain.hormones import HormoneSystemController
from selfimprove.brain.planning import (
    KINDS,
    ModelImprovementTask,
    Observation,
    TaskRules,
    Weakness,
    distillation_weakness,
    find_weaknesses,
    severity_level,
    strongest_by_task,
)
from selfimprove.brain.streaks import unspent
from selfimprove.brain.triggers import GeneticTriggerSystem, Trigger
from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import ConfigError, NotFoundError, SelfImproveError
from selfimprove.loop.ledger_fold import PlanHistory
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain import GainAdvisor
from selfimprove.registry import Registry
from selfimprove.store import Store
from selfimprove.strategies import STRATEGIES, Budget
from selfimprove.tasks import effective_search_space, resolve_task

if TYPE_CHECKING:
    from selfimprove.loop.experiment import ExperimentOutcome

__all__ = ["MAX_WAIT", "Planner"]

logger = logging.getLogger(__name__)

#: Cycles of waiting after which a model's priority stops rising (fair share: each cycle a
#: model waits adds half of its base priority, so no weak model is starved for long; a model
#: never tried counts as having waited this long, so every model gets an early turn).
MAX_WAIT = 10


def _priority(
    severity: float, impact: float, hormone: float, boost: float, expected: float, waiting: int
) -> float:
    """A planned task's priority (one expression, so that ranking and building agree): the
    weakness's part, the brain's part, and the fair-share wait."""
    return _weakness_part(severity, impact) * (hormone * boost * expected) * (1 + 0.5 * waiting)


def _weakness_part(severity: float, impact: float) -> float:
    return severity * impact


#: A weakness as served: the weakness, the strategies that may serve it, severity x impact.
_ServedWeakness = tuple[Weakness, tuple[str, ...], float]


class _Served(NamedTuple):
    """A model's weaknesses as served (weakness, its arms, severity x impact), remembered."""

    key: tuple[Any, ...]  # what they were found on (see Planner._served)
    observation: Observation  # the observation, with its stalled training
    own: tuple[_ServedWeakness, ...]
    teacher: tuple[str, float] | None = None  # the strongest incumbent taught against
    taught: tuple[_ServedWeakness, ...] = ()


def _severity(gap: float) -> tuple[float, float]:
    """A weakness's severity (its gap, capped at 1) and seed 002's impact of its level."""
    return min(1.0, gap) if math.isfinite(gap) else 1.0, severity_level(gap)[1]


class Planner:
    """Plans a cycle's tasks (see the module docstring); remembers what a plan may reuse.

    Args:
        store: The ledger (the plan's history is folded from it).
        registry: The models' checkpoints (incumbents' params and metrics).
        config: Loop settings.
        rules: Task-generation thresholds.
        hormone_system: The hormone controller (priority multipliers, exploration).
        genetic_system: The trigger population (boosts).
        bandit: The strategy bandit (draws and expected rewards).
        gain: The gain model (expected rewards, when trusted).
        budget: One experiment's budget now (the gain model's input).
    """

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        config: SelfImprovementConfig,
        rules: TaskRules,
        hormone_system: HormoneSystemController,
        genetic_system: GeneticTriggerSystem,
        bandit: StrategyBandit,
        gain: GainAdvisor,
        budget: Callable[[], Budget],
    ) -> None:
        self.store = store
        self.registry = registry
        self.config = config
        self.rules = rules
        self.hormone_system = hormone_system
        self.genetic_system = genetic_system
        self.bandit = bandit
        self.gain = gain
        self.budget = budget
        #: The user's tasks, run in the next cycle ahead of the planned ones.
        self.queue: list[ModelImprovementTask] = []
        #: Per model, the strategies that refused an incumbent version (``not_applicable``).
        self.refused: dict[str, dict[str, int]] = {}
        self._searchable: dict[tuple[str, int], bool] = {}
        #: Per model: its weaknesses as served, remembered (see :meth:`_served`).
        self._served_memo: dict[str, _Served] = {}
        #: The gain model's predictions, made by the predictor in :attr:`_predicted_by`.
        self._predicted: dict[tuple[Any, ...], float] = {}
        self._predicted_by: object = None
        self.plan_history = PlanHistory(store)

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
                params = self.registry.incumbent(obs.model).params
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
        memo: dict[Any, Any] | None = None,
    ) -> ModelImprovementTask:
        """The task of ``strategy`` serving ``w``, with its priority: severity × impact ×
        hormone × trigger boost × expected gain × fair-share wait (``memo``: the factors one
        plan shares, see :meth:`_factors`)."""
        severity, impact, hormone, (boost, trigger_ids), expected = self._factors(
            w, obs, strategy, env, active, {} if memo is None else memo
        )
        return ModelImprovementTask(
            model_id=obs.model,
            kind=w.kind,
            strategy=strategy,
            objective=w.objective,
            priority=_priority(severity, impact, hormone, boost, expected, waiting),
            reason=w.reason,
            severity=severity,
            impact=impact,
            hormone_multiplier=hormone,
            trigger_boost=boost,
            trigger_ids=tuple(trigger_ids),
            expected_gain=expected,
            waiting=waiting,
        )

    def _factors(
        self,
        w: Weakness,
        obs: Observation,
        strategy: str,
        env: dict[str, float],
        active: Sequence[Trigger] | None,
        memo: dict[Any, Any],
    ) -> tuple[float, float, float, tuple[float, list[str]], float]:
        """Severity, impact, hormone multiplier, trigger boost (with the triggers' ids) and
        expected-gain factor of a task. What depends only on the kind, the strategy's family or
        the bandit's context is computed once per ``memo`` (one plan: the same brain state)."""
        severity, impact = _severity(w.gap)
        if ("hormone", w.kind) not in memo:
            memo["hormone", w.kind] = (
                self.hormone_system.priority_multiplier(w.kind)
                if self.config.hormone_driven
                else 1.0
            )
        family = STRATEGIES[strategy].family
        if ("boost", family) not in memo:
            memo["boost", family] = (
                self.genetic_system.boost(family, env, active)
                if self.config.genetic_enhanced
                else (1.0, [])
            )
        if self.gain.trusted:
            est = self._predicted_reward(w, obs, strategy)
        else:
            key = ("expected", w.kind, obs.family, strategy)
            if key not in memo:
                memo[key] = self.bandit.expected((w.kind, obs.family), strategy)
            est = memo[key]
        expected = 1.0 + 10.0 * max(0.0, est)
        return severity, impact, memo["hormone", w.kind], memo["boost", family], expected

    def _predicted_reward(self, w: Weakness, obs: Observation, strategy: str) -> float:
        """The gain model's expected reward of the task, remembered while the same predictor
        is loaded (its inputs are the incumbent version's, the weakness's and the budget's)."""
        epochs = float(self.budget().epochs)
        if self._predicted_by is not self.gain.predictor:
            self._predicted, self._predicted_by = {}, self.gain.predictor
        key = (obs.model, obs.version, obs.family, w.kind, w.objective, strategy, epochs)
        if key not in self._predicted:
            inc = self.registry.incumbent(obs.model)
            self._predicted[key] = self.gain.predicted_reward(
                strategy=strategy,
                kind=w.kind,
                family=obs.family,
                parameters=float(inc.metrics.get("parameters") or math.nan),
                gap=obs.primary.gap(obs.value) if obs.primary.target is not None else math.nan,
                epochs=epochs,
                objective=w.objective,
                default_epochs=epochs,
            )
        return self._predicted[key]

    def _served(
        self,
        obs: Observation,
        stalled: int,
        strongest: Mapping[str, Observation],
        streaks: Mapping[str, int],
    ) -> tuple[Observation, tuple[_ServedWeakness, ...]]:
        """The model's weaknesses with the strategies that may serve them (none: left out) and
        their part of the priority (severity × impact), and the observation they were found on.
        Remembered per model until anything they depend on changes: the observation, its
        stalled training, its rejection streaks, the strategies that refused it
        (:attr:`refused`), the rules, or the registered strategies; its distillation weakness
        also until its task's strongest incumbent changes (a new best of a task with many
        models would otherwise have every one of them planned afresh)."""
        key = (
            obs,
            stalled,
            tuple(sorted(streaks.items())),
            tuple(sorted(self.refused.get(obs.model, {}).items())),
            self.rules,
            len(STRATEGIES),
        )
        seen = self._served_memo.get(obs.model)
        if seen is None or seen.key != key:
            stalled_obs = (
                obs if obs.training_stalled == stalled else replace(obs, training_stalled=stalled)
            )
            own = find_weaknesses(stalled_obs, (), self.rules, distill=False)
            seen = _Served(key, stalled_obs, self._servable(own, stalled_obs, streaks))
        if not self.config.cross_model_distillation:
            self._served_memo[obs.model] = seen
            return seen.observation, seen.own
        best = strongest.get(obs.task)
        teacher = None if best is None else (best.model, best.value)
        if teacher != seen.teacher:
            w = distillation_weakness(seen.observation, best)
            taught = () if w is None else self._servable([w], seen.observation, streaks)
            seen = seen._replace(teacher=teacher, taught=taught)
        self._served_memo[obs.model] = seen
        return seen.observation, seen.own + seen.taught

    def _servable(
        self, weaknesses: list[Weakness], obs: Observation, streaks: Mapping[str, int]
    ) -> tuple[_ServedWeakness, ...]:
        """``weaknesses`` as served (:meth:`served_by`) with their arms and severity × impact;
        those no strategy serves are left out."""
        pairs = [self.served_by(w, obs, streaks) for w in weaknesses]
        return tuple(
            (w, tuple(arms), _weakness_part(*_severity(w.gap))) for w, arms in pairs if arms
        )

    def plan(
        self,
        observations: dict[str, Observation],
        env: dict[str, float],
        *,
        limit: int | None = None,
    ) -> list[ModelImprovementTask]:
        """Tasks for this cycle, highest priority first, at most one per model (pure given the
        observations, the environment and the brain state); ``limit``: only the first so many
        (the same ones, built without building the rest).

        Only the chosen tasks are built: every weakness's priority is a product of factors the
        plan computes once per kind, strategy family and bandit context, and a model's
        weaknesses are found again only when what they depend on changed (:meth:`_served`):
        at 10,000 models the plan took 0.20 s a cycle before."""
        peers = list(observations.values())
        waited, stalled, streaks = self.history()
        strongest = strongest_by_task(peers)
        active = self.genetic_system.get_active_triggers(env)  # the same for every model
        served: list[tuple[Weakness, Observation, int, float]] = []
        groups: dict[tuple[tuple[str, str], tuple[str, ...]], list[int]] = {}
        for obs in peers:
            waiting = min(MAX_WAIT, waited.get(obs.model, MAX_WAIT))
            stalled_obs, found = self._served(
                obs, stalled.get(obs.model, 0), strongest, streaks.get(obs.model, {})
            )
            for w, arms, part in found:
                groups.setdefault(((w.kind, obs.family), arms), []).append(len(served))
                served.append((w, stalled_obs, waiting, part))
        # One Thompson draw per weakness, drawn together for each (context, arms) in the order
        # first met (the same observations and brain state: the same draws).
        chosen: dict[int, str] = {}
        for (context, options), members in groups.items():
            picks = self.bandit.choose_many(
                context, options, len(members), temperature=self._temperature()
            )
            chosen.update(zip(members, picks, strict=True))
        memo: dict[Any, Any] = {}
        best: dict[str, tuple[float, int]] = {}  # per model: the first highest priority
        for i, (w, obs, waiting, part) in enumerate(served):
            key = ("brain", w.kind, obs.family, chosen[i])
            brain = memo.get(key)
            if brain is None:
                _, _, hormone, (boost, _), expected = self._factors(
                    w, obs, chosen[i], env, active, memo
                )
                brain = hormone * boost * expected
                if not self.gain.trusted:  # the gain model's part is the model's own
                    memo[key] = brain
            priority = part * brain * (1 + 0.5 * waiting)
            if obs.model not in best or priority > best[obs.model][0]:
                best[obs.model] = (priority, i)
        custom = {t.model_id: t for t in self.queue if t.model_id in observations}
        ranked = [(-p, name) for name, (p, _) in best.items() if name not in custom]
        ranked += [(-t.priority, name) for name, t in custom.items()]
        top = heapq.nsmallest(limit, ranked) if limit is not None else sorted(ranked)
        tasks = []
        for _, name in top:
            if name in custom:
                tasks.append(custom[name])
                continue
            w, obs, waiting, _ = served[best[name][1]]
            tasks.append(self.priced(w, obs, chosen[best[name][1]], env, waiting, active, memo))
        return tasks

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
