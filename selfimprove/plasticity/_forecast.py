"""Is a pruned candidate worth its fine-tuning steps? A forecast from the run's own cycles.

A rolled-back cycle costs the run its fine-tuning steps: the model that is finally kept has had
fewer steps than the reference it is compared to. In the head-pruning benchmark (pydoc, full
mode) each of the six 50-step cycles that was rolled back left the final model about 1.5 points
of perplexity further from the same-steps reference, and the runs with two rollbacks lost to
the best fixed method by that much. The damage a pruning does *before* fine-tuning is measured
anyway (``measure``), and one cycle of fine-tuning leaves a fairly steady share of it (0.3 to
0.6 in those runs, whatever the size of the damage). So, in log perplexity:

    gap_after = gap_before + share * damage

- ``damage = log(perplexity pruned / perplexity before)``, the one-shot damage of this pruning;
- ``gap = log(perplexity / reference perplexity)``, the model over the unpruned start
  fine-tuned with the same steps (before the cycle, and forecast after it);
- ``share`` is estimated from the run's own fine-tuned pruning cycles, kept or rolled back,
  shrunk toward a prior: ``(PRIOR_SHARE * PRIOR_WEIGHT + sum(gap change)) / (PRIOR_WEIGHT +
  sum(damage))``, clamped to ``[0, MAX_SHARE]``. The prior (half the damage stays) speaks for
  :data:`PRIOR_WEIGHT` nats of damage, so a few small prunings cannot talk the run into a large
  one; every cycle the run fine-tunes moves the estimate.

:func:`forecast_gap` says whether the forecast stays within ``log(1 + tolerance)``: a candidate
that does not is not fine-tuned; for the rest of its cycle the search treats its total as failed
and tries a smaller one. Only fine-tuned cycles bound the search for good: the next cycle may
forecast the larger total again, with a share its own fine-tuning has moved. :func:`recoveries`
reads the history from the run's cycle outcomes. Both are pure functions of plain numbers.
Written by hand: this is the run's own measurement model, not a general-purpose estimator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_SHARE",
    "PRIOR_SHARE",
    "PRIOR_WEIGHT",
    "Forecast",
    "Recovery",
    "damage_share",
    "forecast_gap",
    "recoveries",
]

PRIOR_SHARE = 0.5
"""Share of a pruning's one-shot damage assumed to stay after a cycle of fine-tuning."""

PRIOR_WEIGHT = 0.05
"""Nats of one-shot damage the prior counts for (about a 5 % one-shot perplexity rise)."""

MAX_SHARE = 2.0
"""Upper clamp of the estimated share (fine-tuning that made the damage worse)."""


@dataclass(frozen=True)
class Recovery:
    """One fine-tuned pruning cycle: its one-shot damage and how much its gap moved.

    Attributes:
        damage: ``log(perplexity pruned / perplexity before)``.
        gap_change: ``log(after / reference after) - log(before / reference before)``.
    """

    damage: float
    gap_change: float


@dataclass(frozen=True)
class Forecast:
    """The forecast gap of a candidate and whether it is worth fine-tuning.

    Attributes:
        gap: Forecast ``log(perplexity after / reference after)``.
        limit: ``log(1 + tolerance)``.
        share: The share of the damage assumed to stay.
        worth_learning: ``gap <= limit``.
        reason: The figures, in words.
    """

    gap: float
    limit: float
    share: float
    worth_learning: bool
    reason: str


def damage_share(history: Sequence[Recovery]) -> float:
    """The share of one-shot damage that stays after a cycle, from ``history`` and the prior."""
    damage = sum(max(0.0, r.damage) for r in history)
    change = sum(r.gap_change for r in history if r.damage > 0)
    share = (PRIOR_SHARE * PRIOR_WEIGHT + change) / (PRIOR_WEIGHT + damage)
    return min(MAX_SHARE, max(0.0, share))


def forecast_gap(
    history: Sequence[Recovery], *, gap_before: float, damage: float, tolerance: float
) -> Forecast:
    """Forecast the candidate's gap to the reference after its fine-tuning.

    Args:
        history: The run's fine-tuned pruning cycles so far.
        gap_before: ``log(perplexity before / reference before)`` of the model the cycle prunes.
        damage: ``log(perplexity pruned / perplexity before)`` of this candidate.
        tolerance: Relative perplexity increase the acceptance rule allows over the reference.

    Returns:
        The forecast, with its reason.
    """
    share = damage_share(history)
    gap = gap_before + share * max(0.0, damage)
    limit = math.log1p(tolerance)
    worth = gap <= limit
    reason = (
        f"forecast {math.expm1(gap):+.1%} over the reference after fine-tuning "
        f"({'<=' if worth else '>'} {100 * tolerance:.3g}%): now {math.expm1(gap_before):+.1%}, "
        f"pruning {math.expm1(damage):+.1%} before fine-tuning, {share:.2f} of it expected to "
        f"stay ({len(history)} fine-tuned pruning cycles and the prior {PRIOR_SHARE})"
    )
    return Forecast(gap=gap, limit=limit, share=share, worth_learning=worth, reason=reason)


def recoveries(
    outcomes: Sequence[tuple[bool, int, float, float, float, float | None]],
    start_perplexity: float,
) -> list[Recovery]:
    """The fine-tuned pruning cycles of a run, as :class:`Recovery` rows.

    Args:
        outcomes: Per cycle, in order: ``(accepted, heads pruned, perplexity before, pruned,
            after, reference after or None)``.
        start_perplexity: The run's start (the reference before the first kept cycle).

    Returns:
        One row per cycle that pruned and was judged against the reference.
    """
    rows: list[Recovery] = []
    reference = start_perplexity
    for accepted, pruned, before, after_pruning, after, ref_after in outcomes:
        if ref_after is None:
            continue
        if pruned > 0 and min(before, after_pruning, after, reference, ref_after) > 0:
            rows.append(
                Recovery(
                    damage=math.log(after_pruning / before),
                    gap_change=math.log(after / ref_after) - math.log(before / reference),
                )
            )
        if accepted:
            reference = ref_after
    return rows
