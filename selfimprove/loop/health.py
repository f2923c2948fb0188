"""The system's health, computed from measured records only (formulas in docs/architecture.md)."""

from __future__ import annotations

import math
from typing import Any

from selfimprove.store import Decision, ExperimentStatus, Store

__all__ = ["HEALTH_WINDOW", "health_report"]

#: Finished experiments (and cycles) the health report looks back over.
HEALTH_WINDOW = 20


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
