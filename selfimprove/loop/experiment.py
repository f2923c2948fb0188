"""The improvement loop: observe → plan → execute → judge → commit → record, per model.

This is the first, plain form of the cycle of ``docs/architecture.md``: every model below its
target gets one experiment per cycle with the ``train`` strategy (later parts add the other
strategies, the brain signals that rank them, and concurrent execution). Each experiment's seed
comes from (base seed, cycle, model, strategy), so the same seed gives the same decisions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import (
    CheckpointError,
    IncumbentChangedError,
    NotFoundError,
    TaskError,
)
from selfimprove.loop.work import ExperimentWork, WorkResult, candidate_from, run_work, work_for
from selfimprove.measure.evaluation import Evaluation, Evaluator
from selfimprove.measure.judge import Judge, superseded
from selfimprove.nn.device import resolve_device
from selfimprove.objectives import Objective
from selfimprove.registry import LoadedModel, Registry
from selfimprove.seeding import derive_seed
from selfimprove.store import (
    CapabilityRecord,
    Decision,
    ExperimentStatus,
    MeasurementSet,
    ModelRecord,
    Store,
    VersionStatus,
    utcnow,
)
from selfimprove.strategies import Budget, Candidate, Strategy, StrategyContext, get_strategy
from selfimprove.tasks import is_external, resolve_task

__all__ = ["ExperimentOutcome", "ImprovementLoop", "PreparedExperiment", "ProgressCallback"]

logger = logging.getLogger(__name__)

#: Most winning settings of earlier experiments handed to a searching strategy as warm starts.
MAX_WARM_STARTS = 2
#: How many of a model's newest experiments are read to find them.
WARM_START_LOOKBACK = 50
#: Most other models of the same task loaded as teachers for one distillation (the best on
#: validation): each is loaded, verified and sent with the work, so 999 peers cost seconds.
MAX_PEER_TEACHERS = 4

ProgressCallback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class ExperimentOutcome:
    """What happened to one model in one cycle (an experiment, or why there was none).

    ``status`` is an :class:`ExperimentStatus` value, ``"skipped"`` when no experiment ran
    (target met, checkpoint unusable) or ``"not_applicable"`` (the strategy said why not).
    """

    model: str
    cycle: int
    strategy: str
    objective: str
    status: str
    decision: Decision | None
    reason: str
    experiment_id: int | None = None
    before: float = math.nan
    after: float = math.nan
    test_before: float = math.nan
    test_after: float = math.nan
    p_value: float | None = None
    version_before: int | None = None
    version_after: int | None = None
    epochs: float = 0.0  # training epochs the experiment spent
    seconds: float = 0.0  # wall-clock seconds of its strategy's work

    @property
    def promoted(self) -> bool:
        return self.decision is Decision.PROMOTE

    def __str__(self) -> str:
        """One readable line: ``wine (cycle 3): train promoted — accuracy 0.833 → 0.944,
        p=0.0039, 12 epochs in 1.4 s``."""
        head = f"{self.model} (cycle {self.cycle}): {self.strategy or 'nothing'}"
        what = self.decision.value + "d" if self.decision is not None else self.status
        figures = []
        if math.isfinite(self.before) and math.isfinite(self.after):
            figures.append(f"{self.objective} {self.before:.4g} → {self.after:.4g}")
        if self.p_value is not None:
            figures.append(f"p={self.p_value:.2g}")
        if self.epochs or self.seconds:
            figures.append(f"{self.epochs:g} epochs in {self.seconds:.1f} s")
        tail = f" — {', '.join(figures)}" if figures else f": {self.reason}"
        return f"{head} {what}{tail}"


def strongest_peers(
    peers: Sequence[tuple[str, float | None]],
    objective: Objective,
    k: int = MAX_PEER_TEACHERS,
) -> tuple[list[str], str]:
    """The names of the ``k`` peers (other models of the task, with their incumbents' recorded
    validation value of ``objective``) whose value is best — the teachers worth loading — and
    why.

    A peer without that figure ranks last; ties keep the models' names in order. Read from the
    ledger's recorded metrics, so choosing loads nothing.
    """

    def error(peer: tuple[str, float | None]) -> tuple[float, str]:
        name, value = peer
        err = objective.error(float(value)) if value is not None else math.inf
        return (err if math.isfinite(err) else math.inf, name)

    ranked = [name for name, _ in sorted(peers, key=error)[:k]]
    return ranked, (
        f"the {len(ranked)} of {len(peers)} peers best on validation {objective.name} may teach"
    )


@dataclass(frozen=True)
class PreparedExperiment:
    """An experiment the driver has planned and recorded as running: its strategy's work is
    ready for an executor, and :meth:`ImprovementLoop.finish` judges what comes back."""

    plan: _Plan
    experiment_id: int
    observation: Evaluation  # the incumbent's, measured by the driver
    work: ExperimentWork


@dataclass
class _Plan:
    """One experiment's inputs, settled before anything runs."""

    model: ModelRecord
    strategy: Strategy
    incumbent: LoadedModel
    target: Objective
    context: StrategyContext
    cycle: int
    outcome: ExperimentOutcome  # what is known so far (filled in as the experiment goes)


class ImprovementLoop:
    """Runs improvement cycles over every registered model.

    Args:
        store: The ledger.
        registry: Models and checkpoints.
        config: Budgets and the promotion rule.
        seed: Base seed of every experiment.
        evaluator: Measures models (default: one built from ``config``).
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        config: SelfImprovementConfig | None = None,
        *,
        seed: int = 0,
        evaluator: Evaluator | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.config = config or SelfImprovementConfig()
        self.seed = seed
        self.evaluator = evaluator or Evaluator(
            self.config.judge(), resolve_device(self.config.device)
        )
        #: The last observation of each model (by id): incumbent, evaluation, evaluator.
        self._seen: dict[int, tuple[LoadedModel, Evaluation, Evaluator]] = {}

    # ------------------------------------------------------------------ cycles
    def run(
        self,
        cycles: int = 1,
        *,
        models: list[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[ExperimentOutcome]:
        """Run ``cycles`` cycles over ``models`` (default: all registered).

        Experiments a crashed process left unfinished are marked stale first.
        """
        if cycles < 1:
            raise TaskError(f"cycles must be >= 1, but got {cycles=}.")
        self.recover()
        names = (
            models
            if models is not None
            else [
                m.name
                for m in self.store.list_models()
                if not is_external(m.task) and m.incumbent_version_id is not None
            ]
        )
        for name in names:
            self.store.get_model(name)  # unknown names fail before anything runs
        first = self.store.max_cycle() + 1
        outcomes: list[ExperimentOutcome] = []
        for cycle in range(first, first + cycles):
            for name in names:
                if progress:
                    progress("start", {"cycle": cycle, "model": name})
                outcome = self.improve(name, cycle=cycle)
                outcomes.append(outcome)
                if progress:
                    progress("done", {"cycle": cycle, "model": name, "outcome": outcome})
        return outcomes

    def recover(self) -> list[int]:
        """Mark experiments that a crashed process left unfinished as stale; returns their ids."""
        stale = self.store.mark_stale_experiments()
        for exp in stale:
            logger.warning("experiment %d was cut short by a crash: marked stale", exp.id)
        return [e.id for e in stale]

    # ------------------------------------------------------------------ one experiment
    def improve(
        self,
        name: str,
        *,
        cycle: int,
        strategy: str | Strategy = "train",
        objective: str | None = None,
        params: dict[str, Any] | None = None,
        budget: Budget | None = None,
        only_below_target: bool = True,
        observation: Evaluation | None = None,
    ) -> ExperimentOutcome:
        """One experiment on model ``name``: plan, run the strategy on a copy, judge, commit.

        Args:
            name: The model.
            cycle: Cycle number (part of the experiment's seed).
            strategy: Strategy name or instance.
            objective: Objective to improve (default: the strategy's, else the task's primary).
            params: Strategy settings.
            budget: Epochs and seconds (default: from the config).
            only_below_target: Skip a model whose targeted objective already meets its target.
            observation: The incumbent's evaluation made earlier this cycle (by :meth:`observe`);
                when given, the incumbent is not evaluated and recorded a second time.

        Returns:
            The outcome; ``status`` is ``skipped`` or ``not_applicable`` when nothing ran.
        """
        prepared = self.prepare(
            name,
            cycle=cycle,
            strategy=strategy,
            objective=objective,
            params=params,
            budget=budget,
            only_below_target=only_below_target,
            observation=observation,
        )
        if isinstance(prepared, ExperimentOutcome):
            return prepared
        return self.finish(prepared, run_work(prepared.work))

    def prepare(
        self,
        name: str,
        *,
        cycle: int,
        strategy: str | Strategy = "train",
        objective: str | None = None,
        params: dict[str, Any] | None = None,
        budget: Budget | None = None,
        only_below_target: bool = True,
        observation: Evaluation | None = None,
    ) -> PreparedExperiment | ExperimentOutcome:
        """The driver's first half of :meth:`improve`: plan the experiment, record it as
        running and describe its strategy's work (arguments as for :meth:`improve`).

        Returns:
            The prepared experiment, whose :attr:`~PreparedExperiment.work` any executor may
            run (:func:`~selfimprove.loop.work.run_work`) before :meth:`finish`; or the
            outcome when nothing is to run (``skipped``, ``not_applicable``).
        """
        plan = self._plan(name, cycle, get_strategy(strategy), objective, params, budget)
        if isinstance(plan, ExperimentOutcome):
            return plan
        # Refusals come before any measurement is recorded: a refused request changes nothing.
        why_not = plan.strategy.applicable(plan.incumbent, plan.context)
        if why_not is not None:
            return replace(plan.outcome, status="not_applicable", reason=why_not)
        inc_eval = observation or self._observe(plan.model, plan.incumbent)
        target = plan.target
        current = inc_eval.value(target.name)
        plan.outcome = replace(
            plan.outcome, before=current, test_before=inc_eval.value(target.name, "test")
        )
        if only_below_target and target.meets_target(current):
            return replace(
                plan.outcome,
                reason=f"{target.name} {current:.4g} meets its target {target.target}",
            )
        exp_id = self._start(plan)
        if isinstance(exp_id, str):
            return replace(plan.outcome, reason=exp_id)
        work = work_for(
            exp_id,
            plan.strategy,
            plan.incumbent,
            plan.context,
            threads=self.config.threads,
            device=self.config.device,
        )
        return PreparedExperiment(plan, exp_id, inc_eval, work)

    def finish(self, prepared: PreparedExperiment, result: WorkResult) -> ExperimentOutcome:
        """The driver's second half of :meth:`improve`: judge the candidate that came back in
        ``result`` and commit it, or record why there is none (the strategy failed, or its
        bytes did not arrive intact)."""
        plan, exp_id = prepared.plan, prepared.experiment_id
        if result.error is not None:
            return self._fail(plan, exp_id, result.error, result)
        try:
            cand = candidate_from(result, plan.incumbent.task)
        except CheckpointError as exc:
            return self._fail(plan, exp_id, f"{type(exc).__name__}: {exc}", result)
        return self._judge_and_commit(plan, exp_id, cand, prepared.observation, result)

    def _plan(
        self,
        name: str,
        cycle: int,
        strat: Strategy,
        objective: str | None,
        params: dict[str, Any] | None,
        budget: Budget | None,
    ) -> _Plan | ExperimentOutcome:
        """The experiment's inputs, or the outcome when the incumbent cannot be loaded."""
        model = self.store.get_model(name)
        try:
            inc = self.registry.load_record(model)  # the incumbent just read, verified
        except (CheckpointError, NotFoundError) as exc:
            self.store.add_event("checkpoint_error", str(exc), model_id=model.id)
            logger.error("%s left alone: %s", name, exc)
            return ExperimentOutcome(
                name, cycle, strat.name, objective or "", "skipped", None, str(exc)
            )
        task = inc.task
        target = task.objective(objective or strat.default_objective or task.primary.name)
        seed = derive_seed(self.seed, cycle, name, strat.name)
        context = StrategyContext(
            task=task,
            objective=target.name,
            budget=budget or Budget(self.config.train_epochs, self.config.train_seconds),
            seed=seed,
            teachers=self._teachers(model, inc) if strat.needs_teachers else (),
            params=dict(params or {}),
            warm_starts=self._warm_starts(model, strat.name) if strat.warm_startable else (),
        )
        outcome = ExperimentOutcome(
            model=name,
            cycle=cycle,
            strategy=strat.name,
            objective=target.name,
            status="skipped",
            decision=None,
            reason="",
            version_before=inc.version.number,
        )
        return _Plan(model, strat, inc, target, context, cycle, outcome)

    def _start(self, plan: _Plan) -> int | str:
        """Record the experiment as running (its inputs, hypothesis and seed) if this driver
        may claim it; returns its id, or why another process's claim stands in the way."""
        name, target = plan.model.name, plan.target
        cap = self.store.get_capability(f"{name}/{target.name}")
        exp, why = self.store.claim_experiment(
            model_id=plan.model.id,
            capability_id=cap.id,
            strategy=plan.strategy.name,
            objective=target.name,
            params={"budget": vars(plan.context.budget), **plan.context.params},
            hypothesis=(
                f"{plan.strategy.name} reduces the {target.name} error of {name} "
                f"by at least {self.config.performance_threshold:.0%}"
            ),
            cycle=plan.cycle,
            seed=plan.context.seed,
            incumbent_version_id=plan.incumbent.version.id,
        )
        if exp is None:
            logger.info(
                "%s cycle %d: %s not started: %s", name, plan.cycle, plan.strategy.name, why
            )
            return why
        return exp.id

    def _fail(self, plan: _Plan, exp_id: int, reason: str, result: WorkResult) -> ExperimentOutcome:
        """Record a strategy's failure (exception, NaN, overrun, lost worker) with its reason."""
        name = plan.model.name
        logger.warning(
            "experiment %d (%s on %s) failed: %s", exp_id, plan.strategy.name, name, reason
        )
        self.store.update_experiment(
            exp_id,
            status=ExperimentStatus.FAILED,
            reason=reason,
            compute={"worker": result.worker},
            durations={"strategy_s": result.seconds},
        )
        self.store.add_event(
            "experiment_failed", reason, model_id=plan.model.id, payload={"experiment": exp_id}
        )
        return replace(
            plan.outcome,
            status=ExperimentStatus.FAILED.value,
            reason=reason,
            experiment_id=exp_id,
            seconds=result.seconds,
        )

    def _judge_and_commit(
        self,
        plan: _Plan,
        exp_id: int,
        cand: Candidate,
        inc_eval: Evaluation,
        result: WorkResult,
    ) -> ExperimentOutcome:
        """Evaluate the candidate beside the incumbent, judge it, save it, promote or reject."""
        model, inc, target, task = plan.model, plan.incumbent, plan.target, plan.incumbent.task
        name = model.name
        t1 = time.perf_counter()
        # The incumbent was scored when observed: only its latency is timed again, beside the
        # candidate's.
        inc_eval, cand_eval = self.evaluator.evaluate(
            [inc.module, cand.module], task, known=[inc_eval, None]
        )
        judgement = Judge(self.config.judge(), seed=plan.context.seed).judge(
            task, inc_eval, cand_eval, target.name
        )
        t2 = time.perf_counter()
        version = self.registry.save_version(
            model,
            cand.module,
            cand.params,
            parent=inc.version,
            strategy=cand.strategy,
            origin=cand.origin,
            metrics=cand_eval.summary(),
        )
        if judgement.promoted:
            try:
                self.registry.promote(name, version.number, replacing=inc.version)
            except IncumbentChangedError as exc:  # another process promoted meanwhile
                judgement = superseded(judgement, str(exc))
        t3 = time.perf_counter()
        # What the decision leaves in the ledger, in one transaction: the promoted version's
        # measurements or the candidate's rejection, the experiment's record and its event.
        with self.store.batch():
            if judgement.promoted:
                self._record(model, cand_eval, version.id, plan.cycle, "promoted")
            else:
                self.registry.reject(version)
            self.store.update_experiment(
                exp_id,
                status=ExperimentStatus.COMPLETED,
                decision=judgement.decision,
                reason=judgement.reason,
                statistics={**judgement.statistics, "strategy_details": cand.details},
                candidate_version_id=version.id,
                compute={
                    "epochs": cand.cost.epochs,
                    "seconds": cand.cost.seconds,
                    "worker": result.worker,
                },
                durations={
                    "strategy_s": result.seconds,
                    "evaluate_s": t2 - t1,
                    "commit_s": t3 - t2,
                    "total_s": result.seconds + (t3 - t1),
                },
            )
            self.store.add_event(
                judgement.decision.value,
                f"{name} v{version.number}: {judgement.reason}",
                model_id=model.id,
                payload={"experiment": exp_id, "version": version.number},
            )
        if not judgement.promoted:
            self.registry.apply_retention(model)  # a rejected candidate's weights, by policy
        logger.info(
            "%s cycle %d: %s (%s)", name, plan.cycle, judgement.decision.value, judgement.reason
        )
        st = judgement.statistics
        return replace(
            plan.outcome,
            before=st["before"],
            test_before=st["test_before"],
            status=ExperimentStatus.COMPLETED.value,
            decision=judgement.decision,
            reason=judgement.reason,
            experiment_id=exp_id,
            after=st["after"],
            test_after=st["test_after"],
            p_value=st.get("p_value"),
            version_after=version.number if judgement.promoted else inc.version.number,
            epochs=float(cand.cost.epochs),
            seconds=result.seconds,
        )

    def _warm_starts(self, model: ModelRecord, strategy: str) -> tuple[dict[str, Any], ...]:
        """The settings that won ``strategy``'s earlier completed experiments on ``model``
        (their ``best_params``), newest first, distinct, at most :data:`MAX_WARM_STARTS`
        (read from the newest :data:`WARM_START_LOOKBACK` experiments of the model)."""
        found: list[dict[str, Any]] = []
        recent = self.store.list_experiments(
            model_id=model.id, limit=WARM_START_LOOKBACK, newest_first=True
        )
        for e in recent:
            if e.strategy != strategy or e.status is not ExperimentStatus.COMPLETED:
                continue
            best = e.statistics.get("strategy_details", {}).get("best_params")
            if isinstance(best, dict) and best not in found:
                found.append(best)
            if len(found) == MAX_WARM_STARTS:
                break
        return tuple(found)

    def _teachers(self, model: ModelRecord, inc: LoadedModel) -> tuple[LoadedModel, ...]:
        """Models that may teach ``model``: incumbents of other models of the same task (when
        cross-model distillation is on) and this model's earlier versions that kept weights.

        A teacher whose checkpoint fails its checksum is skipped (and logged), never used.
        """
        found: list[LoadedModel] = []
        if self.config.cross_model_distillation:
            figures = self.store.incumbent_figures(
                f"validation_{inc.task.primary.name}", task=model.task
            )
            peers = [(name, value) for mid, name, _, value in figures if mid != model.id]
            chosen, why = strongest_peers(peers, inc.task.primary)
            if len(chosen) < len(peers):
                logger.info("%s: %s", model.name, why)
            for name in chosen:  # only the chosen are read in full
                try:
                    found.append(self.registry.load(name))
                except (CheckpointError, NotFoundError) as exc:
                    logger.warning("teacher %s skipped: %s", name, exc)
        for v in self.store.list_versions(
            model.id, statuses=(VersionStatus.BACKUP, VersionStatus.ROLLED_BACK)
        ):
            try:
                module = self.registry.load_module(model, v, inc.task)
            except CheckpointError as exc:
                logger.warning("teacher %s v%d skipped: %s", model.name, v.number, exc)
                continue
            found.append(LoadedModel(model, v, inc.task, module))
        return tuple(found)

    # ------------------------------------------------------------------ measurements
    def observe(self, name: str) -> tuple[LoadedModel, Evaluation]:
        """Load the incumbent of ``name``, evaluate it (latency included), record measurements.

        Raises:
            CheckpointError: The incumbent's checkpoint is unusable.
        """
        inc = self.registry.load(name)
        return inc, self._observe(inc.model, inc)

    def observe_many(
        self, models: Sequence[ModelRecord], *, refresh: bool = True
    ) -> tuple[list[tuple[LoadedModel, Evaluation]], dict[str, CheckpointError | NotFoundError]]:
        """:meth:`observe` every model, with all their measurements recorded in one transaction.

        Args:
            models: The models, in the order to evaluate them.
            refresh: Load (checksum verified) and evaluate every incumbent. ``False``: an
                incumbent this loop observed before — same version, same task object, same
                evaluator — is not read, evaluated or recorded again; its earlier observation
                is reused (its measurements are in the ledger already). A checkpoint is still
                verified whenever it is loaded to be used (every experiment loads its
                incumbent), and the next refresh verifies every one.

        Returns:
            The observed incumbents with their evaluations (in ``models`` order), and the
            models left alone with why (checkpoint unusable, task unknown).
        """
        observed: list[tuple[LoadedModel, Evaluation, datetime | None]] = []
        unusable: dict[str, CheckpointError | NotFoundError] = {}
        reused = {}
        for m in models:
            seen = None if refresh else self._seen.get(m.id)
            if seen is not None and self._still_valid(seen, m):
                reused[m.id] = seen
        versions = self.store.versions_by_ids(  # only those to load
            m.incumbent_version_id
            for m in models
            if m.incumbent_version_id is not None and m.id not in reused
        )
        for m in models:
            if m.id in reused:
                observed.append((reused[m.id][0], reused[m.id][1], None))
                continue
            try:
                version = versions.get(m.incumbent_version_id or 0)
                inc = self.registry.load_record(m, version)
            except (CheckpointError, NotFoundError) as exc:
                self._seen.pop(m.id, None)
                unusable[m.name] = exc
                continue
            (evaluation,) = self.evaluator.evaluate([inc.module], inc.task)
            self._seen[m.id] = (inc, evaluation, self.evaluator)
            observed.append((inc, evaluation, utcnow()))
        fresh = {inc.model.id for inc, _, at in observed if at is not None}
        if not fresh:  # nothing measured anew: nothing to record
            return [(inc, evaluation) for inc, evaluation, _ in observed], unusable
        caps: dict[int, list[CapabilityRecord]] = {}
        for cap in self.store.list_capabilities(model_ids=fresh):
            if cap.model_id is not None:
                caps.setdefault(cap.model_id, []).append(cap)
        sets: list[MeasurementSet] = []
        baselines: dict[int, float] = {}
        for inc, evaluation, at in observed:
            if at is None:  # reused: recorded when it was measured
                continue
            found, first = self._measurement_sets(
                evaluation, inc.version.id, None, "incumbent", caps.get(inc.model.id, []), at
            )
            sets += found
            baselines.update(first)
        with self.store.batch():  # one commit for every measurement of the cycle
            for cap_id, value in baselines.items():
                self.store.set_capability_baseline(cap_id, value)
            self.store.add_measurement_sets(sets)
        return [(inc, evaluation) for inc, evaluation, _ in observed], unusable

    def _still_valid(
        self, seen: tuple[LoadedModel, Evaluation, Evaluator], model: ModelRecord
    ) -> bool:
        """Whether an earlier observation of ``model`` still describes its incumbent: the same
        version, the same task object (its data) and the same evaluator."""
        inc, _, evaluator = seen
        if inc.version.id != model.incumbent_version_id or evaluator is not self.evaluator:
            return False
        try:
            return resolve_task(model.task) is inc.task
        except NotFoundError:
            return False

    def _observe(self, model: ModelRecord, inc: LoadedModel) -> Evaluation:
        """Evaluate the incumbent and record the measurements."""
        (evaluation,) = self.evaluator.evaluate([inc.module], inc.task)
        self._record(model, evaluation, inc.version.id, None, "incumbent")
        return evaluation

    def _record(
        self,
        model: ModelRecord,
        evaluation: Evaluation,
        version_id: int,
        cycle: int | None,
        role: str,
    ) -> None:
        """Record ``evaluation`` against the model's capabilities, in one transaction."""
        caps = self.store.list_capabilities(model.id)
        sets, baselines = self._measurement_sets(evaluation, version_id, cycle, role, caps)
        with self.store.batch():
            for cap_id, value in baselines.items():
                self.store.set_capability_baseline(cap_id, value)
            self.store.add_measurement_sets(sets)

    @staticmethod
    def _measurement_sets(
        evaluation: Evaluation,
        version_id: int,
        cycle: int | None,
        role: str,
        caps: Sequence[CapabilityRecord],
        measured_at: datetime | None = None,
    ) -> tuple[list[MeasurementSet], dict[int, float]]:
        """What to record of ``evaluation``: one set per capability with a finite value, and
        the first validation value of each capability that has no baseline yet."""
        sets: list[MeasurementSet] = []
        baselines: dict[int, float] = {}
        for cap in caps:
            if cap.objective is None:
                continue
            if cap.objective in ("latency_ms", "size_bytes"):
                values = {"global": evaluation.value(cap.objective)}
                if cap.objective == "latency_ms" and evaluation.latency is not None:
                    values["serving"] = evaluation.latency.serving_median_ms
            else:
                values = {
                    "validation": evaluation.value(cap.objective),
                    "test": evaluation.value(cap.objective, "test"),
                }
            if not math.isfinite(next(iter(values.values()))):
                continue
            if cap.baseline is None and "validation" in values:
                baselines[cap.id] = values["validation"]
            sets.append(
                MeasurementSet(
                    cap.id,
                    values,
                    version_id=version_id,
                    context={"role": role, "cycle": cycle},
                    measured_at=measured_at,
                )
            )
        return sets, baselines
