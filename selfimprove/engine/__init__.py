"""Seed 002's Self-Improvement Engine, on the product's one store.

``SelfImprovementEngine`` profiles capabilities, finds weaknesses from direction-aware gaps,
designs experiments (templates ordered by a bandit), tests them with statistics, measures
improvements, applies code improvements under approval (libcst, audit trail, rollback), learns
about its own learning, and grades itself. It is a facade over small composed parts, each given
the one :class:`~selfimprove.store.Store` (pass the process's with ``store=``):
:class:`Capabilities`, :class:`Weaknesses`, :class:`Experiments`, :class:`CodeImprovements`,
:class:`Learning` and :class:`SelfAssessor`. See :mod:`selfimprove.engine._engine`.

One weakness model: the planner's :class:`~selfimprove.brain.planning.Weakness` (a model short
of a target, and the kind of task that serves it) and the engine's stored
:class:`~selfimprove.store.WeaknessRecord` are the same concept. The record is its persisted
form, with a lifecycle (open → in_progress → resolved / wont_fix) and evidence. Both use one
vocabulary, defined in :mod:`selfimprove.brain.planning` and re-exported here:
:class:`WeaknessType` (a planner kind maps to one through ``KIND_WEAKNESS_TYPE``),
:class:`Severity` with its impact, :func:`severity_for_gap`, and the gap itself, the
direction-aware :meth:`~selfimprove.objectives.Objective.gap`. :func:`record_fields` builds a
record from a planner weakness and :func:`same_weakness` compares the two.

Statistics come from the package's one statistics module, :mod:`selfimprove.measure.stats`.
"""

from __future__ import annotations

from selfimprove.engine._approval import (
    ApprovalPlan,
    approval_digest,
    command_line,
    pinned_digest,
    record_digest,
    unified_diff,
)
from selfimprove.engine._assessment import (
    LearningQuality,
    grade_for,
    learning_quality,
    success_trend,
)
from selfimprove.engine._capabilities import Capabilities
from selfimprove.engine._code import CodeImprovements
from selfimprove.engine._engine import BANDIT_STATE_KEY, SelfImprovementEngine
from selfimprove.engine._experiments import Experiments
from selfimprove.engine._learning import Learning
from selfimprove.engine._self_assessment import SelfAssessor
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
from selfimprove.engine._weakness_book import Weaknesses
from selfimprove.engine._weaknesses import record_fields, same_weakness
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
    "ApprovalPlan",
    "Capabilities",
    "CapabilityProfile",
    "Change",
    "CodeImprovements",
    "Comparison",
    "Experiments",
    "Learning",
    "LearningQuality",
    "MetaLearningType",
    "SelfAssessment",
    "SelfAssessor",
    "SelfImprovementEngine",
    "Severity",
    "WeaknessType",
    "Weaknesses",
    "approval_digest",
    "command_line",
    "compare_samples",
    "confidence_level",
    "describe_change",
    "grade_for",
    "learning_quality",
    "pinned_digest",
    "record_digest",
    "record_fields",
    "same_weakness",
    "severity_for_gap",
    "success_trend",
    "unified_diff",
]
