"""Seed 002's Self-Improvement Engine, on the product's one store.

``SelfImprovementEngine`` profiles capabilities, finds weaknesses from direction-aware gaps,
designs experiments (templates ordered by a bandit), tests them with statistics, measures
improvements, applies code improvements under approval (libcst, audit trail, rollback), learns
about its own learning, and grades itself. See :mod:`selfimprove.engine._engine`.
"""

from __future__ import annotations

from selfimprove.engine._assessment import (
    LearningQuality,
    grade_for,
    learning_quality,
    success_trend,
)
from selfimprove.engine._engine import BANDIT_STATE_KEY, SelfImprovementEngine
from selfimprove.engine._types import (
    SEVERITY_WEIGHT,
    TEMPLATES,
    ApproachResult,
    ApproachTemplate,
    CapabilityProfile,
    MetaLearningType,
    SelfAssessment,
    Severity,
    WeaknessType,
    severity_for_gap,
)
from selfimprove.measure.stats import (
    Change,
    Comparison,
    compare_samples,
    confidence_level,
    describe_change,
)

__all__ = [
    "BANDIT_STATE_KEY",
    "SEVERITY_WEIGHT",
    "TEMPLATES",
    "ApproachResult",
    "ApproachTemplate",
    "CapabilityProfile",
    "Change",
    "Comparison",
    "LearningQuality",
    "MetaLearningType",
    "SelfAssessment",
    "SelfImprovementEngine",
    "Severity",
    "WeaknessType",
    "compare_samples",
    "confidence_level",
    "describe_change",
    "grade_for",
    "learning_quality",
    "severity_for_gap",
    "success_trend",
]
