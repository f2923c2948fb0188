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
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.meta.gain.features import MODEL_OBJECTIVES, ExperimentFacts, experiment_facts
from selfimprove.store import (
    ExperimentRecord,
    ExperimentStatus,
    MetaLearningRecord,
    Store,
    VersionRecord,
)

__all__ = [
    "Z95",
    "Insight",
    "derive_insights",
    "record_comparison",
    "size_bucket",
    "update_insights",
    "wilson_lower_bound",
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


def _strategy_effects(
    facts: Sequence[ExperimentFacts], records: Mapping[int, ExperimentRecord]
) -> list[Insight]:
    groups: dict[tuple[str, str, str], list[ExperimentFacts]] = defaultdict(list)
    for f in facts:
        groups[(f.strategy, _objective_kind(f.objective), f.family)].append(f)
    out = []
    for (strategy, okind, family), group in sorted(groups.items()):
        n = len(group)
        promoted = [f for f in group if f.promoted]
        failed = [f for f in group if f.failed]
        s = len(promoted)
        lb = wilson_lower_bound(s, n)
        gains = [f.gain for f in promoted]
        med_gain = _median(gains)
        rel_all = _finite(
            records[f.id].statistics.get("relative_improvement") for f in group if not f.failed
        )
        objectives = sorted({f.objective or "?" for f in group})
        what = "data objectives" if okind == "data" else "model-level objectives"
        text = (
            f"{strategy} on {family} models ({what}: {', '.join(objectives)}) was promoted in "
            f"{s}/{n} finished experiments"
        )
        if failed:
            text += f" ({len(failed)} failed)"
        if med_gain is not None:
            less = "less error" if okind == "data" else f"smaller {'/'.join(objectives)}"
            text += f"; median gain when promoted: {med_gain:.1%} {less}"
        else:
            text += "; never promoted yet"
        text += f"; confidence {lb:.2f} (Wilson 95% lower bound of the promotion rate)."
        out.append(
            Insight(
                kind="strategy_effect",
                subject=f"{strategy}|{okind}|{family}",
                statement=text,
                count=n,
                successes=s,
                confidence=lb,
                evidence={
                    "experiment_ids": [f.id for f in group],
                    "promoted_ids": [f.id for f in promoted],
                    "failed_ids": [f.id for f in failed],
                    "objectives": objectives,
                    "median_gain_when_promoted": med_gain,
                    "median_relative_improvement_completed": _median(rel_all),
                    "mean_seconds": sum(f.seconds for f in group) / n,
                },
            )
        )
    return out


def _tolerance_text(infos: list[Mapping[str, Any]]) -> str:
    shown = set()
    for info in infos:
        tol = info.get("tolerance")
        if not isinstance(tol, (int, float)):
            continue
        shown.add(f"±{tol:g} absolute" if info.get("absolute") else f"{tol:.0%} relative")
    return " or ".join(sorted(shown)) if shown else "its tolerance"


def _guards_held(
    facts: Sequence[ExperimentFacts],
    records: Mapping[int, ExperimentRecord],
    versions: Mapping[int, VersionRecord],
) -> list[Insight]:
    groups: dict[tuple[str, str, str, str], list[tuple[int, Mapping[str, Any]]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for f in facts:
        if f.failed or not f.model_level:
            continue
        rec = records[f.id]
        guards = rec.statistics.get("guards")
        if not isinstance(guards, dict):
            continue
        version = (
            versions.get(rec.incumbent_version_id) if rec.incumbent_version_id is not None else None
        )
        key, label = size_bucket(version)
        labels[key] = label
        for guard, info in sorted(guards.items()):
            if guard in MODEL_OBJECTIVES or not isinstance(info, dict) or "passed" not in info:
                continue  # only data objectives guarded during optimisation
            groups[(f.strategy, guard, f.family, key)].append((f.id, info))
    out = []
    for (strategy, guard, family, key), items in sorted(groups.items()):
        n = len(items)
        held = [i for i, info in items if info["passed"]]
        lb = wilson_lower_bound(len(held), n)
        regressions = _finite(info.get("regression") for _, info in items)
        text = (
            f"{strategy} kept {guard} within tolerance ({_tolerance_text([i for _, i in items])})"
            f" in {len(held)}/{n} experiments on {family} models with {labels[key]}; "
            f"confidence {lb:.2f} "
            "(Wilson 95% lower bound)."
        )
        out.append(
            Insight(
                kind="guard_held",
                subject=f"{strategy}|{guard}|{family}|{key}",
                statement=text,
                count=n,
                successes=len(held),
                confidence=lb,
                evidence={
                    "experiment_ids": [i for i, _ in items],
                    "held_ids": held,
                    "size_bucket": labels[key],
                    "median_regression": _median(regressions),
                    "worst_regression": max(regressions) if regressions else None,
                },
            )
        )
    return out


def _error_type(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head and head.isidentifier() else "other"


def _failure_modes(
    facts: Sequence[ExperimentFacts], records: Mapping[int, ExperimentRecord]
) -> list[Insight]:
    by_strategy: dict[str, list[ExperimentFacts]] = defaultdict(list)
    for f in facts:
        by_strategy[f.strategy].append(f)
    out = []
    for strategy, group in sorted(by_strategy.items()):
        n = len(group)
        modes: dict[str, list[int]] = defaultdict(list)
        for f in group:
            if f.failed:
                modes[_error_type(records[f.id].reason)].append(f.id)
        for error, ids in sorted(modes.items()):
            lb = wilson_lower_bound(len(ids), n)
            example = records[ids[-1]].reason
            out.append(
                Insight(
                    kind="failure_mode",
                    subject=f"{strategy}|{error}",
                    statement=(
                        f"{strategy} failed with {error} in {len(ids)}/{n} finished experiments "
                        f"(latest: {example[:160]}); confidence {lb:.2f} (Wilson 95% lower bound "
                        "of the failure rate)."
                    ),
                    count=n,
                    successes=len(ids),
                    confidence=lb,
                    evidence={"failed_ids": ids, "latest_reason": example},
                )
            )
    return out


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
    wanted = {f.id for f in facts}
    records = {
        e.id: e
        for e in experiments
        if e.id in wanted and e.status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    }
    versions = store.versions_by_ids(  # read at once
        r.incumbent_version_id for r in records.values() if r.incumbent_version_id is not None
    )
    for rec in records.values():
        vid = rec.incumbent_version_id
        if vid is not None and vid not in versions:  # gone: raises NotFoundError
            versions[vid] = store.version_by_id(vid)
    out = (
        _strategy_effects(facts, records)
        + _guards_held(facts, records, versions)
        + _failure_modes(facts, records)
    )
    return sorted(out, key=lambda i: (i.kind, i.subject))


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
    written = [
        store.upsert_meta_learning(
            i.kind,
            i.subject,
            statement=i.statement,
            count=i.count,
            successes=i.successes,
            confidence=i.confidence,
            evidence=i.evidence,
        )
        for i in derive_insights(store, experiments=experiments, facts=facts)
    ]
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
