"""Prometheus metrics of a ledger, read at scrape time (``selfimprove serve --metrics``).

Nothing in the loop counts anything for Prometheus: a :class:`LedgerCollector` reads the store
when it is scraped, so several processes sharing one ledger are reported once and consistently,
and a scrape says what the ledger says. Each scrape costs a fixed number of bounded queries
whatever the ledger's size: grouped counts of the experiments (no record read), the models and
their capabilities, the newest measurement of each incumbent's primary objective and latency
(one statement), the saved hormone levels, and the health report's window (20 rows).

The metric names are documented in the README ("Monitoring with Prometheus"); a sample Grafana
dashboard that uses them is ``docs/grafana-dashboard.json``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from selfimprove.store import CapabilityRecord, ModelRecord, Store

__all__ = [
    "IncumbentFigures",
    "LedgerCollector",
    "LedgerSnapshot",
    "ledger_registry",
    "metric_families",
    "read_snapshot",
]

#: The capability of each model whose newest measurement is its latency.
LATENCY_OBJECTIVE = "latency_ms"
_OPEN = ("planned", "running")


@dataclass(frozen=True)
class IncumbentFigures:
    """What the ledger last measured of one model's incumbent.

    Attributes:
        model: The model's name.
        objective: Its primary objective (the first one of its task).
        direction: ``maximize`` or ``minimize``.
        value: The incumbent's newest validation value of it (``None``: not measured yet).
        latency_ms: The incumbent's newest batch-1 latency (``None``: not measured).
    """

    model: str
    objective: str
    direction: str
    value: float | None
    latency_ms: float | None


@dataclass(frozen=True)
class LedgerSnapshot:
    """What a scrape reports, read from the store in one go (plain data, no Prometheus types).

    Attributes:
        models: Registered models.
        cycles: The highest cycle number recorded.
        last_cycle_at: When the newest cycle's metrics were recorded (``None``: no cycle yet).
        finished: Finished experiments by ``(strategy, outcome)``; the outcome is the judge's
            decision (``promote``/``reject``) of a completed one, else its status (``failed``,
            ``stale``, or ``completed`` without a decision). A running experiment whose owner
            is gone counts as stale, as ``selfimprove status`` shows it.
        open: Planned and running experiments by ``(strategy, status)``.
        promotions: Experiments the judge promoted.
        incumbents: One entry per model with an incumbent and a primary objective.
        hormones: The hormone levels the loop last saved (empty before its first cycle).
        health: The health report's figures (see :mod:`selfimprove.loop.health`).
    """

    models: int
    cycles: int
    last_cycle_at: datetime | None
    finished: dict[tuple[str, str], int] = field(default_factory=dict)
    open: dict[tuple[str, str], int] = field(default_factory=dict)
    promotions: int = 0
    incumbents: list[IncumbentFigures] = field(default_factory=list)
    hormones: dict[str, float] = field(default_factory=dict)
    health: dict[str, float] = field(default_factory=dict)


def read_snapshot(store: Store) -> LedgerSnapshot:
    """Read what a scrape reports from ``store`` (bounded queries; see the module docstring)."""
    from selfimprove.loop.health import health_report
    from selfimprove.store import Decision, ExperimentStatus

    finished: dict[tuple[str, str], int] = {}
    open_: dict[tuple[str, str], int] = {}
    promotions = 0
    for strategy, status, decision, n in store.count_experiments_by_state():
        if status.is_finished():
            outcome = decision.value if decision is not None else status.value
            finished[strategy, outcome] = finished.get((strategy, outcome), 0) + n
        else:
            open_[strategy, status.value] = open_.get((strategy, status.value), 0) + n
        promotions += n if decision is Decision.PROMOTE else 0
    # A running experiment whose owner is gone is stale for every reader (at most one running
    # experiment per model, so this list stays small).
    running = store.list_experiments(status=ExperimentStatus.RUNNING)
    for seen in store.as_seen_now(running):
        if seen.status is ExperimentStatus.STALE:
            key = (seen.strategy, ExperimentStatus.RUNNING.value)
            open_[key] -= 1
            finished[seen.strategy, "stale"] = finished.get((seen.strategy, "stale"), 0) + 1
    open_ = {k: v for k, v in open_.items() if v > 0}

    models = store.list_models()
    newest = store.list_cycle_metrics(limit=1)
    saved = store.load_state("hormones") or {}
    levels = saved.get("levels", {}) if isinstance(saved, dict) else {}
    report = health_report(store)
    health = {
        k: float(report[k])
        for k in ("overall_health", "improvement_efficiency", "system_stability", "learning_rate")
    }
    return LedgerSnapshot(
        models=len(models),
        cycles=store.max_cycle(),
        last_cycle_at=newest[-1]["timestamp"] if newest else None,
        finished=finished,
        open=open_,
        promotions=promotions,
        incumbents=_incumbents(store, models),
        hormones={str(k): float(v) for k, v in levels.items() if isinstance(v, (int, float))},
        health=health,
    )


def _incumbents(store: Store, models: list[ModelRecord]) -> list[IncumbentFigures]:
    """Each incumbent's newest measurement of its primary objective and latency: only a
    measurement of the current incumbent version counts (after a rollback, none until the
    restored version is measured again)."""
    primary: dict[int, CapabilityRecord] = {}
    latency: dict[int, int] = {}
    for cap in store.list_capabilities():
        if cap.model_id is None or not cap.objective:
            continue
        primary.setdefault(cap.model_id, cap)  # the first objective of a task is its primary
        if cap.objective == LATENCY_OBJECTIVE:
            latency[cap.model_id] = cap.id
    wanted = {c.id for c in primary.values()} | set(latency.values())
    latest = store.latest_measurements(capability_ids=wanted) if wanted else {}

    def of_incumbent(cap_id: int | None, version_id: int) -> float | None:
        rec = latest.get(cap_id) if cap_id is not None else None
        if rec is None or rec.version_id != version_id or not math.isfinite(rec.value):
            return None
        return float(rec.value)

    out = []
    for m in models:
        first = primary.get(m.id)
        if first is None or m.incumbent_version_id is None:
            continue
        out.append(
            IncumbentFigures(
                model=m.name,
                objective=str(first.objective),
                direction=first.direction,
                value=of_incumbent(first.id, m.incumbent_version_id),
                latency_ms=of_incumbent(latency.get(m.id), m.incumbent_version_id),
            )
        )
    return out


def metric_families(snap: LedgerSnapshot, scrape_seconds: float | None = None) -> list[Metric]:
    """The Prometheus metric families of a snapshot (names in the README's table)."""
    models = GaugeMetricFamily("selfimprove_models", "Models registered in the ledger.")
    models.add_metric([], snap.models)
    cycles = CounterMetricFamily(
        "selfimprove_cycles", "Improvement cycles run (the highest cycle number recorded)."
    )
    cycles.add_metric([], snap.cycles)
    finished = CounterMetricFamily(
        "selfimprove_experiments",
        "Finished experiments by strategy and outcome (promote, reject, failed, stale, completed).",
        labels=["strategy", "outcome"],
    )
    for (strategy, outcome), n in sorted(snap.finished.items()):
        finished.add_metric([strategy, outcome], n)
    open_ = GaugeMetricFamily(
        "selfimprove_experiments_open",
        "Experiments planned or running now, by strategy and status.",
        labels=["strategy", "status"],
    )
    for (strategy, status), n in sorted(snap.open.items()):
        open_.add_metric([strategy, status], n)
    promotions = CounterMetricFamily(
        "selfimprove_promotions", "Candidates the judge promoted to incumbent."
    )
    promotions.add_metric([], snap.promotions)
    metric = GaugeMetricFamily(
        "selfimprove_incumbent_metric",
        "Newest validation value of each incumbent's primary objective.",
        labels=["model", "objective", "direction"],
    )
    latency = GaugeMetricFamily(
        "selfimprove_incumbent_latency_seconds",
        "Newest batch-1 latency of each incumbent (median, one thread).",
        labels=["model"],
    )
    for inc in snap.incumbents:
        if inc.value is not None:
            metric.add_metric([inc.model, inc.objective, inc.direction], inc.value)
        if inc.latency_ms is not None:
            latency.add_metric([inc.model], inc.latency_ms / 1000.0)
    hormones = GaugeMetricFamily(
        "selfimprove_hormone_level",
        "Hormone levels the loop last saved, in [0, 1].",
        labels=["hormone"],
    )
    for name, level in sorted(snap.hormones.items()):
        hormones.add_metric([name], level)
    health = [
        ("selfimprove_health_score", "overall_health", "Overall health in [0, 1]."),
        (
            "selfimprove_improvement_efficiency",
            "improvement_efficiency",
            "Mean realised relative gain per finished experiment (last 20).",
        ),
        (
            "selfimprove_system_stability",
            "system_stability",
            "1 - failed/finished over the last 20 finished experiments.",
        ),
        (
            "selfimprove_learning_rate",
            "learning_rate",
            "Mean total improvement per cycle (last 20 cycles).",
        ),
    ]
    out: list[Metric] = [models, cycles, finished, open_, promotions, metric, latency, hormones]
    for name, key, doc in health:
        g = GaugeMetricFamily(name, doc)
        g.add_metric([], snap.health.get(key, math.nan))
        out.append(g)
    if snap.last_cycle_at is not None:
        at = GaugeMetricFamily(
            "selfimprove_last_cycle_timestamp_seconds",
            "When the newest cycle was recorded (Unix time).",
        )
        at.add_metric([], snap.last_cycle_at.replace(tzinfo=timezone.utc).timestamp())
        out.append(at)
    if scrape_seconds is not None:
        took = GaugeMetricFamily(
            "selfimprove_scrape_duration_seconds", "Seconds this scrape took to read the ledger."
        )
        took.add_metric([], scrape_seconds)
        out.append(took)
    return out


class LedgerCollector(Collector):
    """A Prometheus collector that reads ``store`` at every scrape (see the module docstring).

    Args:
        store: The ledger (not closed here); its reads must be safe from the server's threads,
            as the store's are.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        t0 = time.perf_counter()
        snap = read_snapshot(self.store)
        yield from metric_families(snap, time.perf_counter() - t0)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no read at registration: the names are only known by collecting


def ledger_registry(store: Store) -> CollectorRegistry:
    """A registry holding only a :class:`LedgerCollector` of ``store`` (no process metrics: a
    scrape says what the ledger says, whichever process serves it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(store))
    return registry
