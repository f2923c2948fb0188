"""The environment vector that genetic triggers read, measured for real.

Every feature is scaled to about [0, 1]:

- ``cpu_load``: 1-minute load average / CPU count (psutil), capped at 1;
- ``memory_usage``: share of RAM in use (psutil);
- ``error_rate``: failed / finished among the last 20 experiments in the store;
- ``queue_length``: pending improvement tasks / 10, capped at 1;
- ``model_complexity``: mean log10(parameters) of the incumbents / 7, capped at 1;
- ``api_call_rate``: API calls in the last minute / 60, capped at 1.
"""

from __future__ import annotations

import math

import psutil

from selfimprove.store import ExperimentStatus, Store

__all__ = ["FEATURES", "measure_environment"]

FEATURES = (
    "cpu_load",
    "memory_usage",
    "error_rate",
    "queue_length",
    "model_complexity",
    "api_call_rate",
)


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x)) if math.isfinite(x) else 0.0


def measure_environment(
    store: Store, *, queue_length: int = 0, api_calls_last_minute: int = 0
) -> dict[str, float]:
    """Measure the environment now (see the module docstring for each feature)."""
    try:
        load = psutil.getloadavg()[0] / (psutil.cpu_count() or 1)
    except (AttributeError, OSError):  # pragma: no cover - platforms without a load average
        load = psutil.cpu_percent(interval=None) / 100
    recent = [
        e
        for e in store.list_experiments(limit=20, newest_first=True)
        if e.status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    ]
    failed = sum(e.status is ExperimentStatus.FAILED for e in recent)
    sizes = [  # one read of one field for every model, not their versions
        math.log10(max(p, 1.0)) for p in store.incumbent_metric("parameters") if p
    ]
    return {
        "cpu_load": _clip(load),
        "memory_usage": _clip(psutil.virtual_memory().percent / 100),
        "error_rate": failed / len(recent) if recent else 0.0,
        "queue_length": _clip(queue_length / 10),
        "model_complexity": _clip(sum(sizes) / len(sizes) / 7) if sizes else 0.0,
        "api_call_rate": _clip(api_calls_last_minute / 60),
    }
