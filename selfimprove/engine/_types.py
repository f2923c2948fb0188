"""The engine's vocabulary: approach templates, meta-learning kinds and result records.

Weakness types, severity levels and their weights are the planner's
(:mod:`selfimprove.brain.planning`), re-exported here: one vocabulary for both. Seed 002's
levels: a relative gap to the target above 50 % is ``critical`` (impact 0.9), above 30 %
``high`` (0.7), above 20 % ``medium`` (0.5), anything else ``low`` (0.3). A weakness's priority
is its severity weight (critical 1, high 0.75, medium 0.5, low 0.25) times its impact.

The approach templates are the seed's, per weakness type (capability gap: algorithm
optimisation, parallel processing, more training examples; reliability: error handling, retry
logic, graceful degradation; efficiency: caching, query optimisation, resource pooling); the
seed lists none for output quality, so three of the obvious ones are added. Each template's
``prior_improvement`` is only a prior: it is used, and labelled ``prior``, until the engine has
measured that approach on that weakness type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from selfimprove._enums import ValueEnum
from selfimprove.brain.planning import (
    SEVERITY_WEIGHT,
    Severity,
    WeaknessType,
    severity_for_gap,
)

__all__ = [
    "SEVERITY_WEIGHT",
    "TEMPLATES",
    "ApproachResult",
    "ApproachTemplate",
    "CapabilityProfile",
    "MetaLearningType",
    "SelfAssessment",
    "Severity",
    "WeaknessType",
    "severity_for_gap",
]


class MetaLearningType(ValueEnum):
    """Seed 002's kinds of meta-learning (the ``kind`` column of ``meta_learnings``)."""

    EXPERIMENT_EFFECTIVENESS = "experiment_effectiveness"  # which experiments work best
    APPROACH_PREFERENCE = "approach_preference"  # best approach per weakness type
    IMPROVEMENT_PATTERNS = "improvement_patterns"  # sequences of approaches that succeed
    FAILURE_MODES = "failure_modes"  # why experiments fail


@dataclass(frozen=True)
class ApproachTemplate:
    """One kind of experiment for one kind of weakness.

    Attributes:
        name: The approach (an arm of the engine's bandit, the ``strategy`` of its experiments).
        weakness_type: The weakness type it addresses.
        hypothesis: Formatted with ``subject`` (the capability or weakness name).
        methodology: How the experiment is carried out and judged.
        prior_improvement: Relative improvement assumed before any measurement (a prior).
    """

    name: str
    weakness_type: WeaknessType
    hypothesis: str
    methodology: str
    prior_improvement: float


def _t(
    name: str, wt: WeaknessType, hypothesis: str, methodology: str, prior: float
) -> ApproachTemplate:
    return ApproachTemplate(name, wt, hypothesis, methodology, prior)


_CG, _RE, _EF, _OQ = (
    WeaknessType.CAPABILITY_GAP,
    WeaknessType.RELIABILITY,
    WeaknessType.EFFICIENCY,
    WeaknessType.OUTPUT_QUALITY,
)

#: Seed 002's experiment templates, per weakness type, in the seed's order.
TEMPLATES: dict[WeaknessType, tuple[ApproachTemplate, ...]] = {
    _CG: (
        _t(
            "algorithm_optimization",
            _CG,
            "A better algorithm for {subject} closes part of its gap to the target.",
            "Profile {subject}, replace its slowest or least accurate step with a better "
            "algorithm, and compare it with the current one on the same inputs.",
            0.25,
        ),
        _t(
            "parallel_processing",
            _CG,
            "Processing independent parts of {subject} in parallel raises its throughput.",
            "Split the work of {subject} into independent units, run them concurrently, and "
            "compare wall-clock results with the sequential version.",
            0.30,
        ),
        _t(
            "more_training_examples",
            _CG,
            "Training {subject} on more examples improves it.",
            "Retrain with more (or augmented) training examples and compare on the validation "
            "split with the current version; the test split is only reported.",
            0.20,
        ),
    ),
    _RE: (
        _t(
            "error_handling",
            _RE,
            "Handling the errors {subject} meets lowers its failure rate.",
            "Catch and handle the failure causes seen in the evidence, then compare failure "
            "rates over repeated runs.",
            0.30,
        ),
        _t(
            "retry_logic",
            _RE,
            "Retrying transient failures of {subject} (bounded, with back-off) lowers its "
            "failure rate.",
            "Add bounded retries with exponential back-off and compare failure rates.",
            0.25,
        ),
        _t(
            "graceful_degradation",
            _RE,
            "A degraded but valid answer when {subject} fails beats an error.",
            "Add a fallback path and compare the share of runs that return a usable result.",
            0.20,
        ),
    ),
    _EF: (
        _t(
            "caching",
            _EF,
            "Caching repeated work of {subject} makes it faster.",
            "Memoise results of repeated calls and compare timings with the uncached version.",
            0.40,
        ),
        _t(
            "query_optimization",
            _EF,
            "Fewer or better-indexed queries make {subject} faster.",
            "Batch or index the queries behind {subject} and compare timings.",
            0.30,
        ),
        _t(
            "resource_pooling",
            _EF,
            "Reusing expensive resources (connections, buffers, workers) speeds up {subject}.",
            "Pool the resources {subject} creates per call and compare timings.",
            0.20,
        ),
    ),
    _OQ: (
        _t(
            "output_validation",
            _OQ,
            "Validating and repairing outputs of {subject} raises their quality.",
            "Check each output against its constraints, repair or retry the failing ones, and "
            "compare quality scores.",
            0.20,
        ),
        _t(
            "ensemble_voting",
            _OQ,
            "Combining several answers for {subject} beats a single one.",
            "Produce several candidates, combine them by voting or averaging, and compare "
            "quality scores.",
            0.15,
        ),
        _t(
            "more_training_examples",
            _OQ,
            "Training {subject} on more examples improves its outputs.",
            "Retrain with more examples and compare quality on held-out data.",
            0.20,
        ),
    ),
}


@dataclass(frozen=True)
class CapabilityProfile:
    """Where one capability stands.

    Attributes:
        name: Capability name (``<model>/<objective>`` for the neural system's).
        type: Its category.
        direction: ``minimize`` or ``maximize``.
        unit: Display unit.
        baseline: Value when tracking began.
        target: Value that counts as good enough (``None``: no target).
        current: Latest measured value (``None``: never measured).
        measurements: How many values are recorded.
        last_measured_at: When the latest was taken.
        gap: Direction-aware relative shortfall from the target (0 at target).
        level: ``at_target``, a severity, ``no_target`` or ``unmeasured``.
        improvement: Direction-aware relative change from baseline to current.
        model_id: The neural system's model, if it is one of its objectives.
        objective: That model's objective name.
    """

    id: int
    name: str
    type: str
    description: str
    direction: str
    unit: str
    baseline: float | None
    target: float | None
    current: float | None
    measurements: int
    last_measured_at: datetime | None
    gap: float | None
    level: str
    improvement: float | None
    model_id: int | None
    objective: str | None

    @property
    def at_target(self) -> bool:
        """Whether the latest value meets the target."""
        return self.level == "at_target"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


@dataclass(frozen=True)
class ApproachResult:
    """The outcome of :meth:`SelfImprovementEngine.test_approach`.

    Attributes:
        experiment_id: The experiment.
        status: ``completed`` or ``failed``.
        success: Improvement above the threshold and significant.
        significant: p-value below alpha.
        relative_improvement: Direction-aware relative improvement (on means for Welch, on
            medians for Mann-Whitney).
        expected_improvement: What was expected before it ran (``None``: nothing).
        exceeded_expectation: Whether the measured improvement reached the expectation.
        p_value: One-sided p-value.
        test: The test used.
        effect_size: Cohen's d (positive: better).
        ci: Confidence interval of the relative improvement.
        reason: One line, with the figures.
        error: ``Type: message`` of the exception that failed the run.
        statistics: Everything stored with the experiment.
    """

    experiment_id: int
    status: str
    success: bool
    significant: bool
    relative_improvement: float | None
    expected_improvement: float | None
    exceeded_expectation: bool
    p_value: float | None
    test: str | None
    effect_size: float | None
    ci: tuple[float, float] | None
    reason: str
    error: str | None = None
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


@dataclass(frozen=True)
class SelfAssessment:
    """Seed 002's self-assessment, every figure counted from the ledger.

    Attributes:
        learning_quality_score: 0.6 × share of experiments beating their expectation + 0.4 ×
            weakness resolution rate.
        grade: A (> 0.8), B (> 0.6), C (> 0.4) or D.
        components: The counts behind the score.
        capabilities: Totals, at target, mean improvement.
        weaknesses: Totals by status and open ones by severity.
        experiments: Totals by status, success rate.
        improvements: Applied code improvements and model promotions.
        meta_learnings: Count, by kind.
        trend: Recent success rate against the one before it.
        generated_at: When it was computed (UTC).
    """

    learning_quality_score: float
    grade: str
    components: dict[str, Any]
    capabilities: dict[str, Any]
    weaknesses: dict[str, Any]
    experiments: dict[str, Any]
    improvements: dict[str, Any]
    meta_learnings: dict[str, Any]
    trend: dict[str, Any]
    generated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)
