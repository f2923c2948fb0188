"""The accept/reject rule of a plasticity cycle, as a pure function of plain numbers.

A cycle is kept only if its validation perplexity is at most ``start * (1 + tolerance)`` (the
*start* of the run, so small losses cannot pile up cycle after cycle) and the degeneration
score of its seeded generations is at most the threshold. The verdict also carries the margin
the next cycle's level is adapted by: how much of the tolerance was left unused (1 = none used,
0 = all used or exceeded).

The plasticity layer passes the figures in; this module knows nothing of models or heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from selfimprove.errors import ConfigError
from selfimprove.store.records import Decision

__all__ = ["CycleFigures", "CycleVerdict", "judge_cycle"]


@dataclass(frozen=True)
class CycleFigures:
    """What a cycle measured, as the rule reads it.

    Attributes:
        perplexity_start: Validation perplexity of the run's starting model (> 0).
        perplexity_after: Validation perplexity of the candidate after learning (> 0).
        degeneration: Degeneration score of the candidate's generations (0 healthy, 1 worst).
        tolerance: Relative perplexity increase over the start a cycle may leave (0 to 1).
        degeneration_threshold: Highest degeneration score a cycle may leave.
    """

    perplexity_start: float
    perplexity_after: float
    degeneration: float
    tolerance: float
    degeneration_threshold: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.perplexity_start) and self.perplexity_start > 0):
            raise ConfigError(
                f"perplexity_start must be a finite number > 0, but got {self.perplexity_start=}."
            )
        if not 0 <= self.tolerance <= 1:
            raise ConfigError(f"tolerance must be in [0, 1], but got {self.tolerance=}.")


@dataclass(frozen=True)
class CycleVerdict:
    """The rule's answer.

    Attributes:
        decision: :attr:`Decision.PROMOTE` (keep the cycle) or :attr:`Decision.REJECT`.
        reason: The figures that decided, in one line.
        limit: The highest validation perplexity the cycle could keep.
        margin: Share of the tolerance left unused, in [0, 1] (0 when the tolerance is 0).
    """

    decision: Decision
    reason: str
    limit: float
    margin: float

    @property
    def accepted(self) -> bool:
        """Whether the cycle is kept."""
        return self.decision is Decision.PROMOTE


def judge_cycle(figures: CycleFigures) -> CycleVerdict:
    """Keep or undo a cycle (see the module docstring for the rule).

    A NaN perplexity or degeneration fails its comparison, so such a cycle is rejected.

    Args:
        figures: The cycle's measurements and the run's bounds.

    Returns:
        The decision, its reason, the perplexity limit and the unused tolerance.
    """
    f = figures
    limit = f.perplexity_start * (1 + f.tolerance)
    ok_ppl = f.perplexity_after <= limit
    ok_deg = f.degeneration <= f.degeneration_threshold
    reason = (
        f"perplexity {f.perplexity_after:.4g} {'<=' if ok_ppl else '>'} limit {limit:.4g} "
        f"(start {f.perplexity_start:.4g} + {f.tolerance:.0%}); degeneration "
        f"{f.degeneration:.3f} {'<=' if ok_deg else '>'} {f.degeneration_threshold:.3f}"
    )
    increase = f.perplexity_after / f.perplexity_start - 1
    margin = 1 - min(1.0, max(0.0, increase) / f.tolerance) if f.tolerance > 0 else 0.0
    decision = Decision.PROMOTE if ok_ppl and ok_deg else Decision.REJECT
    return CycleVerdict(decision=decision, reason=reason, limit=limit, margin=margin)
