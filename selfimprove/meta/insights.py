"""Meta-learning insights: what the ledger says about which strategies work where, with counts.

Every number in an insight is counted from stored experiments; nothing is estimated by hand.
Three kinds (seed 002's meta-learning types), each one row per (kind, subject) in the
``meta_learnings`` table:

- ``strategy_effect`` (seed 002's *experiment effectiveness*), subject
  ``<strategy>|<objective kind>|<model family>``: over the finished (completed or failed)
  experiments of that strategy on models of that task family targeting that kind of objective,
  ``count`` = experiments, ``successes`` = promotions. The objective kind is ``data`` for an
  objective measured on data (accuracy, mse) and ``model`` for a property of the model itself
  (``latency_ms``, ``size_bytes``, ``parameters``). The statement gives the median realised gain
  of the promotions (the judge's relative error reduction on validation) and the failures.
- ``guard_held`` (seed 002's *approach preference* for optimisation), subject
  ``<strategy>|<guard>|<model family>|<size bucket>``: over the completed experiments that
  targeted a model-level objective (so that a data objective such as accuracy was a *guard*),
  ``count`` = experiments where that guard was measured, ``successes`` = those where it held
  (stayed within its tolerance, ``statistics.guards[guard].passed``). Models are grouped by a
  size feature of the incumbent: the widest hidden layer when its params name one (``width`` or
  ``widths``: ``≤ 64``, ``65–256``, ``> 256``), else the decade of its parameter count.
- ``failure_mode`` (seed 002's *failure modes*), subject ``<strategy>|<error type>``:
  ``count`` = finished experiments of the strategy, ``successes`` = those that failed with
  that error type (the text before the first ``:`` of the recorded reason).

``confidence`` is the lower bound of the Wilson score interval at 95 % of ``successes / count``,
in closed form (``z`` = the 97.5 % standard-normal quantile, from :class:`statistics.NormalDist`)::

    p = s / n
    lower = (p + z²/2n − z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)

so 9 successes out of 10 give 0.596, and a single success out of one only 0.207: a pattern
seen once is not yet believed.

Counts, medians and rates cover every finished experiment; an insight's evidence lists the
newest :data:`EVIDENCE_IDS` experiment ids of each kind (a row must not grow with the ledger).
The system keeps an :class:`InsightBook` and folds each cycle's new experiments into it, writing
only the insights they change; :func:`derive_insights` folds the whole ledger at once, with the
same result.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.meta.gain.features import MODEL_OBJECTIVES, ExperimentFacts, experiment_facts
from selfimprove.store import (
    ExperimentRecord,
    MetaLearningRecord,
    Store,
    VersionRecord,
)

__all__ = [
    "EVIDENCE_IDS",
    "Z95",
    "Insight",
    "InsightBook",
    "derive_insights",
    "fold_into",
    "record_comparison",
    "size_bucket",
    "update_insights",
    "wilson_lower_bound",
    "write_insights",
]

logger = logging.getLogger(__name__)

#: The 97.5 % quantile of the standard normal: two-sided 95 % intervals.
Z95 = statistics.NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Insight:
    """One meta-learning, as stored in ``meta_learnings``.

    Attributes:
        kind: ``strategy_effect``, ``guard_held`` or ``failure_mode``.
        subject: What it is about (``|``-joined keys; unique within a kind).
        statement: One readable sentence with the numbers.
        count: Experiments it is counted over.
        successes: Those that count as a success for this kind.
        confidence: Wilson 95 % lower bound of ``successes / count``.
        evidence: The experiment ids and figures behind it.
    """

    kind: str
    subject: str
    statement: str
    count: int
    successes: int
    confidence: float
    evidence: dict[str, Any]


def wilson_lower_bound(successes: int, count: int, z: float = Z95) -> float:
    """Lower bound of the Wilson score interval of a success rate (closed form).

    Args:
        successes: Successes, ``0 <= successes <= count``.
        count: Trials (0 gives a bound of 0: nothing seen, nothing believed).
        z: Standard-normal quantile (default: 95 % two-sided).

    Returns:
        The lower bound, in [0, 1].

    Raises:
        ConfigError: Negative counts, or more successes than trials.
    """
    if count < 0 or not 0 <= successes <= count:
        raise ConfigError(
            f"a success rate needs 0 <= successes <= count, but got {successes=}, {count=}."
        )
    if successes == 0:
        return 0.0  # exact; the closed form leaves a rounding residue of about 1e-17
    p, n = successes / count, float(count)
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def size_bucket(version: VersionRecord | None) -> tuple[str, str]:
    """A model-size group of an incumbent: ``(key, label)``.

    Args:
        version: The incumbent version (``None``: unknown).

    Returns:
        By widest hidden layer when the params name one (``width`` or ``widths``), else by the
        decade of ``metrics["parameters"]``, else ``("size_unknown", "unknown size")``.
    """
    if version is None:
        return "size_unknown", "unknown size"
    params = version.params
    width: int | None = None
    widths = params.get("widths")
    if isinstance(widths, list) and widths and all(isinstance(w, int) for w in widths):
        width = max(widths)
    elif isinstance(params.get("width"), int) and int(params.get("depth", 1)) > 0:
        width = int(params["width"])
    if width is not None:
        if width <= 64:
            return "width<=64", "width ≤ 64"
        if width <= 256:
            return "width<=256", "64 < width ≤ 256"
        return "width>256", "width > 256"
    p = version.metrics.get("parameters")
    if isinstance(p, (int, float)) and math.isfinite(p) and p >= 1:
        decade = math.floor(math.log10(p))
        return f"params~1e{decade}", f"10^{decade}–10^{decade + 1} parameters"
    return "size_unknown", "unknown size"


def _objective_kind(objective: str) -> str:
    return "model" if objective in MODEL_OBJECTIVES else "data"


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


#: The newest experiment ids an insight keeps as evidence (its counts cover every experiment).
EVIDENCE_IDS = 50


def _ids() -> deque[int]:
    return deque(maxlen=EVIDENCE_IDS)


@dataclass
class _Effect:
    """A ``strategy_effect`` group's running counts."""

    n: int = 0
    gains: list[float] = field(default_factory=list)  # realised gains of the promotions
    relative: list[float] = field(default_factory=list)  # relative improvement, not failed
    objectives: set[str] = field(default_factory=set)
    seconds: float = 0.0
    ids: deque[int] = field(default_factory=_ids)
    promoted_ids: deque[int] = field(default_factory=_ids)
    failed_ids: deque[int] = field(default_factory=_ids)
    promoted: int = 0
    failed: int = 0


@dataclass
class _Guard:
    """A ``guard_held`` group's running counts."""

    label: str
    n: int = 0
    held: int = 0
    regressions: list[float] = field(default_factory=list)
    tolerances: set[str] = field(default_factory=set)
    ids: deque[int] = field(default_factory=_ids)
    held_ids: deque[int] = field(default_factory=_ids)


@dataclass
class _Failure:
    """One error type of a strategy: how often, the newest ids and reason."""

    count: int = 0
    ids: deque[int] = field(default_factory=_ids)
    latest: str = ""


def _tolerance(info: Mapping[str, Any]) -> str | None:
    tol = info.get("tolerance")
    if not isinstance(tol, (int, float)):
        return None
    return f"±{tol:g} absolute" if info.get("absolute") else f"{tol:.0%} relative"


class InsightBook:
    """Every insight's running counts, folded one finished experiment at a time.

    The system keeps one book per process and folds each cycle's new experiments into it
    (:class:`selfimprove.loop.learning.CycleLearner`), so a cycle's meta-learning costs what the
    cycle added, not what the ledger holds; :func:`derive_insights` folds the whole ledger into
    a new book. Either way the same experiments give the same insights.
    """

    def __init__(self) -> None:
        self._effects: dict[tuple[str, str, str], _Effect] = {}
        self._guards: dict[tuple[str, str, str, str], _Guard] = {}
        self._finished: dict[str, int] = defaultdict(int)  # per strategy
        self._failures: dict[str, dict[str, _Failure]] = defaultdict(dict)

    def add(
        self, fact: ExperimentFacts, record: ExperimentRecord, version: VersionRecord | None
    ) -> set[tuple[str, str]]:
        """Fold one finished experiment in; returns the (kind, subject) of every insight it
        changed."""
        touched: set[tuple[str, str]] = set()
        okind = _objective_kind(fact.objective)
        key = (fact.strategy, okind, fact.family)
        effect = self._effects.setdefault(key, _Effect())
        effect.n += 1
        effect.ids.append(fact.id)
        effect.objectives.add(fact.objective or "?")
        effect.seconds += fact.seconds
        if fact.promoted:
            effect.promoted += 1
            effect.promoted_ids.append(fact.id)
            effect.gains.append(fact.gain)
        if fact.failed:
            effect.failed += 1
            effect.failed_ids.append(fact.id)
        else:
            effect.relative.extend(_finite([record.statistics.get("relative_improvement")]))
        touched.add(("strategy_effect", "|".join(key)))
        touched |= self._add_guards(fact, record, version)
        self._finished[fact.strategy] += 1
        if fact.failed:
            failure = self._failures[fact.strategy].setdefault(
                _error_type(record.reason), _Failure()
            )
            failure.count += 1
            failure.ids.append(fact.id)
            failure.latest = record.reason
        # a strategy's every failure mode is counted over all its finished experiments
        touched |= {("failure_mode", f"{fact.strategy}|{e}") for e in self._failures[fact.strategy]}
        return touched

    def _add_guards(
        self, fact: ExperimentFacts, record: ExperimentRecord, version: VersionRecord | None
    ) -> set[tuple[str, str]]:
        guards = record.statistics.get("guards")
        if fact.failed or not fact.model_level or not isinstance(guards, dict):
            return set()
        bucket, label = size_bucket(version)
        touched = set()
        for guard, info in sorted(guards.items()):
            if guard in MODEL_OBJECTIVES or not isinstance(info, dict) or "passed" not in info:
                continue  # only data objectives guarded during optimisation
            key = (fact.strategy, guard, fact.family, bucket)
            g = self._guards.setdefault(key, _Guard(label))
            g.n += 1
            g.ids.append(fact.id)
            if info["passed"]:
                g.held += 1
                g.held_ids.append(fact.id)
            g.regressions.extend(_finite([info.get("regression")]))
            tolerance = _tolerance(info)
            if tolerance is not None:
                g.tolerances.add(tolerance)
            touched.add(("guard_held", "|".join(key)))
        return touched

    def insights(self, touched: Iterable[tuple[str, str]] | None = None) -> list[Insight]:
        """The insights of ``touched`` (default: all), sorted by (kind, subject)."""
        out = []
        for kind, subject in sorted(touched if touched is not None else self._subjects()):
            parts = subject.split("|")
            if kind == "strategy_effect":
                a, b, c = parts
                out.append(_effect_insight((a, b, c), self._effects[(a, b, c)]))
            elif kind == "guard_held":
                a, b, c, d = parts
                out.append(_guard_insight((a, b, c, d), self._guards[(a, b, c, d)]))
            else:
                strategy, error = subject.split("|", 1)
                failure = self._failures[strategy][error]
                out.append(_failure_insight(strategy, error, failure, self._finished[strategy]))
        return out

    def _subjects(self) -> set[tuple[str, str]]:
        return (
            {("strategy_effect", "|".join(k)) for k in self._effects}
            | {("guard_held", "|".join(k)) for k in self._guards}
            | {("failure_mode", f"{s}|{e}") for s, modes in self._failures.items() for e in modes}
        )


def _effect_insight(key: tuple[str, str, str], e: _Effect) -> Insight:
    strategy, okind, family = key
    lb = wilson_lower_bound(e.promoted, e.n)
    med_gain = _median(e.gains)
    objectives = sorted(e.objectives)
    what = "data objectives" if okind == "data" else "model-level objectives"
    text = (
        f"{strategy} on {family} models ({what}: {', '.join(objectives)}) was promoted in "
        f"{e.promoted}/{e.n} finished experiments"
    )
    if e.failed:
        text += f" ({e.failed} failed)"
    if med_gain is not None:
        less = "less error" if okind == "data" else f"smaller {'/'.join(objectives)}"
        text += f"; median gain when promoted: {med_gain:.1%} {less}"
    else:
        text += "; never promoted yet"
    text += f"; confidence {lb:.2f} (Wilson 95% lower bound of the promotion rate)."
    return Insight(
        kind="strategy_effect",
        subject="|".join(key),
        statement=text,
        count=e.n,
        successes=e.promoted,
        confidence=lb,
        evidence={
            "experiment_ids": list(e.ids),
            "promoted_ids": list(e.promoted_ids),
            "failed_ids": list(e.failed_ids),
            "objectives": objectives,
            "median_gain_when_promoted": med_gain,
            "median_relative_improvement_completed": _median(e.relative),
            "mean_seconds": e.seconds / e.n,
        },
    )


def _guard_insight(key: tuple[str, str, str, str], g: _Guard) -> Insight:
    strategy, guard, family, _ = key
    lb = wilson_lower_bound(g.held, g.n)
    tolerance = " or ".join(sorted(g.tolerances)) if g.tolerances else "its tolerance"
    text = (
        f"{strategy} kept {guard} within tolerance ({tolerance}) in {g.held}/{g.n} experiments "
        f"on {family} models with {g.label}; confidence {lb:.2f} (Wilson 95% lower bound)."
    )
    return Insight(
        kind="guard_held",
        subject="|".join(key),
        statement=text,
        count=g.n,
        successes=g.held,
        confidence=lb,
        evidence={
            "experiment_ids": list(g.ids),
            "held_ids": list(g.held_ids),
            "size_bucket": g.label,
            "median_regression": _median(g.regressions),
            "worst_regression": max(g.regressions) if g.regressions else None,
        },
    )


def _error_type(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head and head.isidentifier() else "other"


def _failure_insight(strategy: str, error: str, f: _Failure, finished: int) -> Insight:
    lb = wilson_lower_bound(f.count, finished)
    return Insight(
        kind="failure_mode",
        subject=f"{strategy}|{error}",
        statement=(
            f"{strategy} failed with {error} in {f.count}/{finished} finished experiments "
            f"(latest: {f.latest[:160]}); confidence {lb:.2f} (Wilson 95% lower bound "
            "of the failure rate)."
        ),
        count=finished,
        successes=f.count,
        confidence=lb,
        evidence={"failed_ids": list(f.ids), "latest_reason": f.latest},
    )


def fold_into(
    book: InsightBook,
    store: Store,
    experiments: Sequence[ExperimentRecord],
    facts: Sequence[ExperimentFacts],
) -> set[tuple[str, str]]:
    """Fold the finished experiments of ``facts`` (their records among ``experiments``) into
    ``book``, oldest first; returns the insights changed. Reads only their incumbent versions.
    """
    records = {e.id: e for e in experiments}
    versions = store.versions_by_ids(
        vid for f in facts if (vid := records[f.id].incumbent_version_id) is not None
    )
    touched: set[tuple[str, str]] = set()
    for f in facts:
        rec = records[f.id]
        vid = rec.incumbent_version_id
        if vid is not None and vid not in versions:  # gone: raises NotFoundError
            versions[vid] = store.version_by_id(vid)
        touched |= book.add(f, rec, versions.get(vid) if vid is not None else None)
    return touched


def derive_insights(
    store: Store,
    *,
    experiments: Sequence[ExperimentRecord] | None = None,
    facts: Sequence[ExperimentFacts] | None = None,
) -> list[Insight]:
    """Every insight the ledger supports now, sorted by (kind, subject).

    Args:
        store: The ledger (read only).
        experiments: Every experiment, oldest first, when already read (default: read now).
        facts: ``experiment_facts(store)`` of those experiments, when already computed.

    Returns:
        The ``strategy_effect``, ``guard_held`` and ``failure_mode`` insights (see the module
        docstring for what each counts).
    """
    if experiments is None:
        experiments = store.list_experiments()
    if facts is None:
        facts = experiment_facts(store, experiments)
    book = InsightBook()
    fold_into(book, store, experiments, facts)
    return book.insights()


def write_insights(store: Store, insights: Sequence[Insight]) -> list[MetaLearningRecord]:
    """Upsert ``insights`` into ``meta_learnings`` (one row per kind and subject)."""
    return [
        store.upsert_meta_learning(
            i.kind,
            i.subject,
            statement=i.statement,
            count=i.count,
            successes=i.successes,
            confidence=i.confidence,
            evidence=i.evidence,
        )
        for i in insights
    ]


def update_insights(
    store: Store,
    *,
    experiments: Sequence[ExperimentRecord] | None = None,
    facts: Sequence[ExperimentFacts] | None = None,
) -> list[MetaLearningRecord]:
    """Write the current insights to ``meta_learnings`` (one row per kind and subject).

    Idempotent: a second call refreshes counts, statements and confidence in place and adds no
    row for an insight already stored.

    Args:
        store: The ledger.
        experiments: Every experiment, oldest first, when already read (default: read now).
        facts: ``experiment_facts(store)`` of those experiments, when already computed.

    Returns:
        The stored records, in :func:`derive_insights` order.
    """
    written = write_insights(store, derive_insights(store, experiments=experiments, facts=facts))
    logger.info("meta-learnings updated: %d insights", len(written))
    return written


def record_comparison(store: Store, result: Mapping[str, Any]) -> MetaLearningRecord:
    """Keep a :func:`selfimprove.meta.gain.compare_with_bandit` result as a meta-learning.

    Kind ``gain_model``, subject ``gain_model_vs_bandit``; ``count`` = held-out experiments,
    ``successes`` = those where the gain model's absolute error was smaller than the bandit's,
    ``confidence`` = the Wilson 95 % lower bound of that share.

    Args:
        store: The ledger.
        result: What ``compare_with_bandit`` returned.

    Returns:
        The stored record (re-recording refreshes the same row).
    """
    n, wins = int(result["n"]), int(result["gain_model_wins"])
    return store.upsert_meta_learning(
        "gain_model",
        "gain_model_vs_bandit",
        statement=f"{result['reason']} (decides: {result['decides']}).",
        count=n,
        successes=wins,
        confidence=wilson_lower_bound(wins, n),
        evidence={
            k: result[k]
            for k in (
                "gain_model_mae",
                "bandit_mae",
                "p_value",
                "decides",
                "held_out_ids",
                "conversion",
            )
        },
    )
