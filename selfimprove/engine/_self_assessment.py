"""The engine's self-assessment: seed 002's score and the ledger's counts, read from the store.

The formulas are pure functions in :mod:`selfimprove.engine._assessment`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from selfimprove.engine._assessment import LearningQuality, learning_quality, success_trend
from selfimprove.engine._capabilities import Capabilities
from selfimprove.engine._learning import FINISHED, outcome
from selfimprove.engine._types import CapabilityProfile, SelfAssessment, Severity
from selfimprove.engine._weakness_book import Weaknesses
from selfimprove.store import (
    CodeImprovementStatus,
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    Store,
    WeaknessRecord,
    WeaknessStatus,
    utcnow,
)

__all__ = ["SelfAssessor"]


def _capability_counts(profiles: Sequence[CapabilityProfile]) -> dict[str, Any]:
    measured = [p for p in profiles if p.current is not None]
    improvements = [p.improvement for p in measured if p.improvement is not None]
    return {
        "total": len(profiles),
        "measured": len(measured),
        "at_target": sum(p.at_target for p in profiles),
        "below_target": sum(p.level in {s.value for s in Severity} for p in profiles),
        "mean_improvement": (float(np.mean(improvements)) if improvements else None),
    }


def _weakness_counts(weaknesses: Sequence[WeaknessRecord]) -> dict[str, Any]:
    open_by_severity: dict[str, int] = {s.value: 0 for s in Severity}
    by_status: dict[str, int] = {s.value: 0 for s in WeaknessStatus}
    for w in weaknesses:
        by_status[w.status.value] += 1
        if w.status.is_active():
            open_by_severity[w.severity] = open_by_severity.get(w.severity, 0) + 1
    return {"total": len(weaknesses), "by_status": by_status, "open_by_severity": open_by_severity}


def _experiment_counts(
    experiments: Sequence[ExperimentRecord], finished: Sequence[ExperimentRecord]
) -> dict[str, Any]:
    exp_status: dict[str, int] = defaultdict(int)
    for e in experiments:
        exp_status[e.status.value] += 1
    successes = [e.decision is Decision.PROMOTE for e in finished]
    engine_finished = [e for e in finished if e.weakness_id is not None]
    return {
        "total": len(experiments),
        "by_status": dict(exp_status),
        "finished": len(finished),
        "successes": sum(successes),
        "success_rate": sum(successes) / len(finished) if finished else None,
        "engine_finished": len(engine_finished),
        "engine_successes": sum(e.decision is Decision.PROMOTE for e in engine_finished),
    }


def expectation_counts(finished: Sequence[ExperimentRecord]) -> dict[str, int]:
    """Finished experiments and how many reached their expectation, by who ran them.

    The engine's experiments carry their own expected improvement, reached when the measured
    one is at least that. The neural system's (no expected improvement: every experiment of
    ``selfimprove run`` / ``improve``) are judged against the judge's bar (a significant
    relative improvement of at least its threshold, guards passed): reached when promoted. A
    failed experiment reached nothing.

    Returns:
        ``engine`` / ``engine_exceeded`` and ``judged`` / ``judged_promoted``.
    """
    engine = [e for e in finished if e.expected_improvement is not None]
    judged = [e for e in finished if e.expected_improvement is None]
    return {
        "engine": len(engine),
        "engine_exceeded": sum(
            1
            for e in engine
            if e.status is ExperimentStatus.COMPLETED
            and outcome(e)[1] >= float(e.expected_improvement or 0.0)
        ),
        "judged": len(judged),
        "judged_promoted": sum(e.decision is Decision.PROMOTE for e in judged),
    }


class SelfAssessor:
    """Seed 002's self-assessment, counted from the ledger.

    Args:
        store: The one store.
        capabilities: Profiles every capability.
        weaknesses: Brought up to date before counting.
    """

    def __init__(self, store: Store, capabilities: Capabilities, weaknesses: Weaknesses) -> None:
        self.store = store
        self.capabilities = capabilities
        self.weaknesses = weaknesses

    def learning_quality(self) -> LearningQuality:
        """Seed 002's score from the ledger (see :func:`learning_quality` and
        :func:`expectation_counts` for what counts as reaching an expectation)."""
        counts = expectation_counts(
            [e for e in self.store.list_experiments() if e.status in FINISHED]
        )
        weaknesses = self.store.list_weaknesses()
        resolved = sum(w.status is WeaknessStatus.RESOLVED for w in weaknesses)
        return learning_quality(
            counts["engine_exceeded"] + counts["judged_promoted"],
            counts["engine"] + counts["judged"],
            resolved,
            len(weaknesses),
        )

    def _improvement_counts(self, finished: Sequence[ExperimentRecord]) -> dict[str, Any]:
        code = self.store.list_code_improvements()
        code_applied = sum(c.status is CodeImprovementStatus.APPLIED for c in code)
        promotions = sum(
            1 for e in finished if e.weakness_id is None and e.decision is Decision.PROMOTE
        )
        return {
            "code_applied": code_applied,
            "code_pending": sum(c.status is CodeImprovementStatus.PENDING for c in code),
            "code_rolled_back": sum(c.status is CodeImprovementStatus.ROLLED_BACK for c in code),
            "model_promotions": promotions,
            "applied_total": code_applied + promotions,
        }

    def get_self_assessment(self) -> SelfAssessment:
        """Seed 002's self-assessment, counted from the ledger.

        Learning quality = 0.6 × share of finished experiments whose measured improvement
        reached their expectation (the engine's own, or the judge's bar for the neural
        system's: see :func:`expectation_counts`, whose counts are in ``components``) + 0.4 ×
        share of weaknesses resolved; grade A > 0.8,
        B > 0.6, C > 0.4, else D. With the capabilities, weaknesses by severity, experiment
        success rate, applied improvements (code changes and model promotions), meta-learning
        count, and the trend of the success rate.
        """
        self.weaknesses.update_all()
        quality = self.learning_quality()
        profiles = self.capabilities.profile_all_capabilities()
        weaknesses = self.store.list_weaknesses()
        experiments = self.store.list_experiments()
        finished = sorted(  # in the order they finished: the trend reads them in time
            (e for e in experiments if e.status in FINISHED),
            key=lambda e: (e.finished_at or e.created_at, e.id),
        )
        metas = self.store.list_meta_learnings()
        meta_kinds: dict[str, int] = defaultdict(int)
        for m in metas:
            meta_kinds[m.kind] += 1
        latest = self.store.list_history_entries(1)
        return SelfAssessment(
            learning_quality_score=quality.score,
            grade=quality.grade,
            components={**quality.to_dict(), **expectation_counts(finished)},
            capabilities=_capability_counts(profiles),
            weaknesses=_weakness_counts(weaknesses),
            experiments=_experiment_counts(experiments, finished),
            improvements=self._improvement_counts(finished),
            meta_learnings={"count": len(metas), "by_kind": dict(meta_kinds)},
            trend={
                **success_trend([e.decision is Decision.PROMOTE for e in finished]),
                "latest_version": latest[0].version if latest else None,
            },
            generated_at=utcnow(),
        )
