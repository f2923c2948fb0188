"""The engine's experiments: designed from templates, tested with statistics, measured.

:class:`Experiments` plans experiments for a weakness (templates ordered by the engine's
bandit, expectations from the meta-learnings), tests an approach against its baseline
(the decisions in :mod:`selfimprove.engine._approach`), measures changes of a metric (the
decisions in :mod:`selfimprove.engine._measurement`), and feeds every finished experiment to
the bandit, the meta-learnings and the pattern learner.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from selfimprove.engine._approach import (
    RunSettings,
    SampleFailure,
    judge_approach,
    run_settings,
    take_samples,
)
from selfimprove.engine._learning import FINISHED, Learning
from selfimprove.engine._measurement import (
    metric_direction,
    sample_significance,
    threshold_significance,
)
from selfimprove.engine._profiles import pct
from selfimprove.engine._types import TEMPLATES, ApproachResult, ApproachTemplate, WeaknessType
from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.measure.stats import (
    Comparison,
    compare_samples,
    confidence_level,
    describe_change,
)
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.patterns import Prediction
from selfimprove.objectives import Direction
from selfimprove.seeding import derive_seed
from selfimprove.store import (
    CapabilityRecord,
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    ImprovementMeasurementRecord,
    Store,
    WeaknessRecord,
    WeaknessStatus,
)

__all__ = ["BANDIT_FAMILY", "BANDIT_STATE_KEY", "Experiments"]

logger = logging.getLogger(__name__)

#: Where the engine's bandit lives in the ``state`` table (beside the neural system's
#: ``bandit``: the system rewrites its own key whole at every cycle, so sharing it would drop
#: the engine's arms).
BANDIT_STATE_KEY = "engine_bandit"
#: The bandit context's second part for the engine's experiments (the neural system puts the
#: model family there).
BANDIT_FAMILY = "engine"


class Experiments:
    """Experiment generation, testing and measurement (seed 002).

    Args:
        store: The one store.
        learning: Gives expectations and patterns; learns from every finished experiment.
        seed: Seeds the bandit's draws and the bootstrap intervals.

    Attributes:
        improvement_threshold: Relative improvement an experiment must exceed (0.15).
        alpha: Significance level of every test (0.05).
    """

    improvement_threshold: float = 0.15
    alpha: float = 0.05

    def __init__(self, store: Store, learning: Learning, *, seed: int = 0) -> None:
        self.store = store
        self.learning = learning
        self.seed = seed

    def bandit(self) -> StrategyBandit:
        """The engine's bandit as stored (a fresh one, seeded, before the first save)."""
        saved = self.store.load_state(BANDIT_STATE_KEY)
        return StrategyBandit.from_dict(saved) if saved else StrategyBandit(self.seed)

    # ------------------------------------------------------------------ design
    def generate_experiments(
        self, weakness_id: int, num_experiments: int = 3
    ) -> list[ExperimentRecord]:
        """Design experiments for a weakness from the templates of its type.

        The engine's bandit (Thompson sampling, context ``(weakness type, "engine")``) orders
        the approaches; the first ``num_experiments`` become planned experiments. Each gets a
        hypothesis, a methodology and an expected improvement: the mean measured improvement
        of that approach on that weakness type (meta-learning ``experiment_effectiveness``)
        when there is one, else the template's prior, labelled ``prior``.

        Args:
            weakness_id: An open or in-progress weakness.
            num_experiments: How many (at most one per approach of its type).

        Returns:
            The planned experiments.

        Raises:
            NotFoundError: Unknown weakness.
            ConfigError: A closed weakness, or ``num_experiments < 1``.
        """
        if num_experiments < 1:
            raise ConfigError(f"num_experiments must be >= 1, but got {num_experiments=}.")
        w = self.store.get_weakness(weakness_id)
        if not w.status.is_active():
            raise ConfigError(
                f"weakness {weakness_id} is {w.status.value}; experiments are planned only for "
                "open or in-progress weaknesses."
            )
        wtype = WeaknessType(w.type)
        ranked, draws = self._rank(wtype)
        if num_experiments > len(ranked):
            logger.info(
                "weakness %d: %d experiments asked, %d approaches exist for %s",
                weakness_id,
                num_experiments,
                len(ranked),
                wtype.value,
            )
        caps = {c.id: c for c in self.store.list_capabilities()}
        capability = caps.get(w.capability_id) if w.capability_id is not None else None
        history = [e.strategy for e in self._weakness_sequence(weakness_id)]
        self.learning.fit_patterns()
        arms = [t.name for t in TEMPLATES[wtype]]
        predictions = {
            p.approach: p for p in self.learning.pattern_learner.predict_next(history, arms)
        }
        specs = [
            self._spec(w, wtype, t, capability, draws[t.name], predictions[t.name])
            for t in ranked[:num_experiments]
        ]
        planned = self.store.add_experiments(specs)
        if w.status is WeaknessStatus.OPEN:
            self.store.update_weakness(weakness_id, status=WeaknessStatus.IN_PROGRESS)
        logger.info("weakness %d: planned %s", weakness_id, ", ".join(e.strategy for e in planned))
        return planned

    def _rank(self, wtype: WeaknessType) -> tuple[list[ApproachTemplate], dict[str, float]]:
        """The templates of ``wtype`` by the bandit's draws (saved), best first."""
        templates = TEMPLATES[wtype]
        arms = [t.name for t in templates]
        bandit = self.bandit()
        draws = bandit.sample((wtype.value, BANDIT_FAMILY), arms)
        self.store.save_state(BANDIT_STATE_KEY, bandit.to_dict())
        return sorted(templates, key=lambda t: (-draws[t.name], arms.index(t.name))), draws

    def _spec(
        self,
        w: WeaknessRecord,
        wtype: WeaknessType,
        t: ApproachTemplate,
        capability: CapabilityRecord | None,
        draw: float,
        pred: Prediction,
    ) -> dict[str, Any]:
        """The planned experiment of template ``t`` for weakness ``w``."""
        subject = capability.name if capability else w.name
        learnt = self.learning.expected_improvement(wtype.value, t.name)
        if learnt is not None:
            expected, source = learnt[0], f"meta_learning (n={learnt[1]})"
        else:
            expected, source = t.prior_improvement, "prior"
        return {
            "model_id": capability.model_id if capability else None,
            "capability_id": capability.id if capability else None,
            "objective": capability.objective if capability else None,
            "strategy": t.name,
            "hypothesis": (
                f"{t.hypothesis.format(subject=subject)} Expected improvement "
                f"{expected:+.0%} ({source})."
            ),
            "weakness_id": w.id,
            "expected_improvement": expected,
            "params": {
                "source": "engine",
                "weakness_type": wtype.value,
                "methodology": t.methodology.format(subject=subject),
                "expected_source": source,
                "bandit_draw": draw,
                "pattern_prediction": {
                    "probability": pred.probability,
                    "pattern_id": pred.pattern_id,
                    "support": pred.support,
                },
            },
        }

    def _weakness_sequence(self, weakness_id: int) -> list[ExperimentRecord]:
        done = [
            e for e in self.store.list_weakness_experiments(weakness_id) if e.status in FINISHED
        ]
        return sorted(done, key=lambda e: (e.finished_at or e.created_at, e.id))

    # ------------------------------------------------------------------ testing
    def test_approach(
        self,
        experiment_id: int,
        test_function: Callable[[], Any],
        baseline_function: Callable[[], Any] | None = None,
        baseline_value: float | None = None,
        repeats: int = 20,
        *,
        measure: str = "time",
        direction: Direction | str | None = None,
        test: str = "auto",
        warmup: int = 1,
    ) -> ApproachResult:
        """Run an experiment: the approach against the baseline, repeatedly, and judge it.

        The two functions are called alternately (baseline first on even repeats, the approach
        first on odd ones) so that drift in the machine's speed hits both alike. With
        ``measure="time"`` each call's wall-clock time is the sample (lower is better); with
        ``measure="value"`` each call returns the sample (direction from ``direction`` or the
        weakness's capability). Welch's t-test compares means, Mann-Whitney U ranks (``auto``:
        Mann-Whitney for timings, which are skewed, Welch for values); against a
        ``baseline_value`` the one-sample t-test or Wilcoxon signed-rank test is used.

        Success = relative improvement > ``improvement_threshold`` and p < ``alpha``. An
        exception in either function ends the experiment as failed, with the error recorded.
        Afterwards the bandit, the meta-learnings and the pattern learner learn from it.

        Args:
            experiment_id: A planned experiment (e.g. from :meth:`generate_experiments`).
            test_function: The approach, called with no arguments.
            baseline_function: The current way (or give ``baseline_value``).
            baseline_value: A fixed baseline figure instead of a function.
            repeats: Samples of each.
            measure: ``time`` or ``value``.
            direction: For ``value``: which way is better.
            test: ``auto``, ``welch`` or ``mann_whitney``.
            warmup: Unrecorded calls of each before sampling.

        Returns:
            The result, also stored with the experiment (statistics, decision, reason).

        Raises:
            NotFoundError: Unknown experiment.
            ConfigError: The experiment already ran, or the arguments do not fit together.
        """
        exp = self.store.get_experiment(experiment_id)
        settings = run_settings(
            exp,
            has_baseline_function=baseline_function is not None,
            baseline_value=baseline_value,
            repeats=repeats,
            measure=measure,
            direction=direction,
            test=test,
            warmup=warmup,
            capability_direction=self._capability_direction,
        )
        self.store.update_experiment(experiment_id, status=ExperimentStatus.RUNNING)
        t_start = time.perf_counter()
        try:
            samples = take_samples(
                test_function, baseline_function, repeats=repeats, warmup=warmup, measure=measure
            )
        except SampleFailure as failure:
            return self._failed(exp, failure, measure, time.perf_counter() - t_start)
        baseline: Sequence[float] | float = (
            samples.baseline if baseline_function is not None else float(baseline_value or 0.0)
        )
        cmp = compare_samples(
            baseline,
            samples.approach,
            settings.direction,
            test=settings.test,
            seed=derive_seed("engine_experiment", self.seed, experiment_id),
        )
        recorded = samples.baseline if baseline_function is not None else [baseline_value]
        return self._completed(exp, cmp, samples.approach, recorded, measure, settings, t_start)

    def _capability_direction(self, capability_id: int) -> str:
        caps = {c.id: c for c in self.store.list_capabilities()}
        return caps[capability_id].direction

    def _failed(
        self, exp: ExperimentRecord, failure: SampleFailure, measure: str, seconds: float
    ) -> ApproachResult:
        """Record a run whose approach or baseline raised as failed, and learn from it."""
        exc = failure.error
        error = f"{type(exc).__name__}: {exc}"
        reason = str(failure)
        logger.warning("experiment %d failed: %s", exp.id, reason)
        stats_fail = {
            "error": error,
            "error_type": type(exc).__name__,
            "failed_side": failure.samples.side,
            "completed_repeats": len(failure.samples.approach),
            "measure": measure,
            "threshold": self.improvement_threshold,
            "alpha": self.alpha,
            "success": False,
        }
        self.store.update_experiment(
            exp.id,
            status=ExperimentStatus.FAILED,
            reason=reason,
            statistics=stats_fail,
            compute={"seconds": seconds},
        )
        self._after_experiment(exp.id)
        return ApproachResult(
            experiment_id=exp.id,
            status=ExperimentStatus.FAILED.value,
            success=False,
            significant=False,
            relative_improvement=None,
            expected_improvement=exp.expected_improvement,
            exceeded_expectation=False,
            p_value=None,
            test=None,
            effect_size=None,
            ci=None,
            reason=reason,
            error=error,
            statistics=stats_fail,
        )

    def _completed(
        self,
        exp: ExperimentRecord,
        cmp: Comparison,
        approach: list[float],
        baseline: list[Any],
        measure: str,
        settings: RunSettings,
        t_start: float,
    ) -> ApproachResult:
        """Judge a completed run, record its statistics and decision, and learn from it.

        ``baseline`` is the baseline's samples, or ``[baseline_value]`` when it was a figure.
        """
        verdict = judge_approach(
            cmp,
            threshold=self.improvement_threshold,
            alpha=self.alpha,
            expected=exp.expected_improvement,
            measure=measure,
        )
        rel = cmp.relative_improvement
        statistics = {
            **cmp.to_dict(),
            "relative_improvement": rel,
            "p_value": cmp.p_value,
            "significant": verdict.significant,
            "success": verdict.success,
            "threshold": self.improvement_threshold,
            "alpha": self.alpha,
            "measure": measure,
            "direction": settings.direction.value,
            "expected_improvement": exp.expected_improvement,
            "exceeded_expectation": verdict.exceeded_expectation,
            "samples": {"baseline": baseline, "approach": approach},
            "interleaved": settings.interleaved,
        }
        wall = time.perf_counter() - t_start
        self.store.update_experiment(
            exp.id,
            status=ExperimentStatus.COMPLETED,
            decision=Decision.PROMOTE if verdict.success else Decision.REJECT,
            reason=verdict.reason,
            statistics=statistics,
            compute={"seconds": wall},
            durations={"test_s": wall},
        )
        logger.info("experiment %d (%s): %s", exp.id, exp.strategy, verdict.reason)
        self._after_experiment(exp.id)
        return ApproachResult(
            experiment_id=exp.id,
            status=ExperimentStatus.COMPLETED.value,
            success=verdict.success,
            significant=verdict.significant,
            relative_improvement=rel,
            expected_improvement=exp.expected_improvement,
            exceeded_expectation=verdict.exceeded_expectation,
            p_value=cmp.p_value,
            test=cmp.test,
            effect_size=cmp.effect_size,
            ci=cmp.relative_ci,
            reason=verdict.reason,
            statistics=statistics,
        )

    def _after_experiment(self, experiment_id: int) -> None:
        """Feed a finished engine experiment to the bandit, the meta-learnings, the patterns."""
        exp = self.store.get_experiment(experiment_id)
        wtype = str(exp.params.get("weakness_type") or WeaknessType.CAPABILITY_GAP.value)
        success = exp.decision is Decision.PROMOTE
        rel = exp.statistics.get("relative_improvement")
        gain = float(rel) if isinstance(rel, (int, float)) and math.isfinite(rel) else 0.0
        bandit = self.bandit()
        bandit.update((wtype, BANDIT_FAMILY), exp.strategy, max(0.0, gain) if success else 0.0)
        self.store.save_state(BANDIT_STATE_KEY, bandit.to_dict())
        self.store.add_event(
            "engine_experiment",
            exp.reason,
            model_id=exp.model_id,
            payload={"experiment_id": exp.id, "weakness_id": exp.weakness_id, "success": success},
        )
        self.learning.learn_from(exp, wtype)

    # ------------------------------------------------------------------ measuring
    def measure_improvement(
        self,
        before_value: float,
        after_value: float,
        metric_name: str,
        context: dict[str, Any] | None = None,
        *,
        before_samples: Sequence[float] | None = None,
        after_samples: Sequence[float] | None = None,
        direction: Direction | str | None = None,
        experiment_id: int | None = None,
        improvement_id: int | None = None,
        test: str = "welch",
    ) -> ImprovementMeasurementRecord:
        """Measure a change of one metric and store it (a time series per metric name).

        Figures (seed 002): absolute ``after - before``, relative ``(after - before) /
        |before|``, percent; plus ``improvement``, the relative change signed so that positive
        is better. With samples, significance is a two-sided test, Welch's t-test or (for
        skewed samples such as timings) Mann-Whitney U, at ``alpha``; with none, the seed's
        rule ``|relative| >= improvement_threshold``, labelled ``threshold``.
        Confidence: ``high`` above 50 %, ``medium`` above 15 %, else ``low`` (and ``low`` when
        samples show the change is not significant).

        Args:
            before_value: The metric before.
            after_value: The metric after.
            metric_name: A capability name (its direction is used) or any name.
            context: Kept with the figures.
            before_samples: Repeated measurements before.
            after_samples: Repeated measurements after.
            direction: Which way is better (required unless the metric is a capability).
            experiment_id: The experiment it belongs to.
            improvement_id: The code improvement it belongs to.
            test: With samples: ``welch`` or ``mann_whitney``.

        Returns:
            The stored measurement.

        Raises:
            ConfigError: Non-finite values, a missing or contradicting direction, samples on
                one side only, an unknown test.
        """
        try:
            cap: CapabilityRecord | None = self.store.get_capability(metric_name)
        except NotFoundError:
            cap = None
        d = metric_direction(metric_name, cap, direction)
        change = describe_change(float(before_value), float(after_value), d)
        if (before_samples is None) != (after_samples is None):
            raise ConfigError("pass both before_samples and after_samples, or neither.")
        if before_samples is not None and after_samples is not None:
            sig = sample_significance(before_samples, after_samples, test, self.alpha)
        else:
            sig = threshold_significance(change, self.improvement_threshold)
        level = confidence_level(
            change.improvement, sig.significant if before_samples is not None else None
        )
        record = self.store.add_improvement_measurement(
            metric_name=metric_name,
            capability_id=cap.id if cap else None,
            experiment_id=experiment_id,
            improvement_id=improvement_id,
            direction=d.value,
            before_value=float(before_value),
            after_value=float(after_value),
            absolute_change=change.absolute,
            relative_change=change.relative,
            percent_change=change.percent,
            improvement=change.improvement,
            significant=sig.significant,
            p_value=sig.p_value,
            test=sig.test,
            confidence=level,
            n_before=sig.n_before,
            n_after=sig.n_after,
            context=context or {},
        )
        logger.info(
            "%s: %.6g → %.6g (%s, %s, confidence %s)",
            metric_name,
            before_value,
            after_value,
            pct(change.improvement),
            "significant" if sig.significant else "not significant",
            level,
        )
        return record
