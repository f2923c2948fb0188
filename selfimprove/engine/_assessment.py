"""Self-assessment formulas: learning quality, grade, trend. Pure functions over counts.

Seed 002: learning quality = 0.6 × (share of experiments that beat their expectation) + 0.4 ×
(weakness resolution rate); grade A above 0.8, B above 0.6, C above 0.4, else D. A share with
nothing to count over is 0 (nothing has been shown yet), and the counts are reported with it
so that a reader can tell "0 of 0" from "0 of 12".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from selfimprove.errors import ConfigError

__all__ = ["LearningQuality", "grade_for", "learning_quality", "success_trend"]

EXCEEDED_WEIGHT = 0.6
RESOLUTION_WEIGHT = 0.4


def grade_for(score: float) -> str:
    """A (> 0.8), B (> 0.6), C (> 0.4), else D."""
    if score > 0.8:
        return "A"
    if score > 0.6:
        return "B"
    if score > 0.4:
        return "C"
    return "D"


@dataclass(frozen=True)
class LearningQuality:
    """The score, its grade and the counts it was computed from."""

    score: float
    grade: str
    exceeded: int
    with_expectation: int
    exceeded_share: float
    resolved: int
    weaknesses: int
    resolution_rate: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


def learning_quality(
    exceeded: int, with_expectation: int, resolved: int, weaknesses: int
) -> LearningQuality:
    """Seed 002's learning quality score from four counts.

    Args:
        exceeded: Finished experiments whose measured improvement reached their expectation.
        with_expectation: Finished experiments that had an expectation.
        resolved: Weaknesses resolved.
        weaknesses: All weaknesses ever identified (won't-fix ones included).

    Raises:
        ConfigError: A count is negative or a part exceeds its whole.
    """
    if not (0 <= exceeded <= with_expectation and 0 <= resolved <= weaknesses):
        raise ConfigError(
            "need 0 <= exceeded <= with_expectation and 0 <= resolved <= weaknesses, but got "
            f"{exceeded=}, {with_expectation=}, {resolved=}, {weaknesses=}."
        )
    share = exceeded / with_expectation if with_expectation else 0.0
    rate = resolved / weaknesses if weaknesses else 0.0
    score = EXCEEDED_WEIGHT * share + RESOLUTION_WEIGHT * rate
    return LearningQuality(
        score, grade_for(score), exceeded, with_expectation, share, resolved, weaknesses, rate
    )


def success_trend(outcomes: Sequence[bool], window: int = 10) -> dict[str, Any]:
    """Whether the recent success rate rises or falls against the one before it.

    The last ``w`` outcomes are compared with the ``w`` before them, ``w = min(window, n // 2)``;
    a difference above 0.1 is ``improving``, below −0.1 ``declining``, else ``stable``; fewer
    than 4 outcomes give ``insufficient_data``.

    Args:
        outcomes: Success of each finished experiment, oldest first.
        window: Largest window.
    """
    n = len(outcomes)
    if n < 4:
        return {"direction": "insufficient_data", "finished": n}
    w = min(window, n // 2)
    recent = outcomes[n - w :]
    earlier = outcomes[n - 2 * w : n - w]
    r_rate, e_rate = sum(recent) / w, sum(earlier) / w
    diff = r_rate - e_rate
    direction = "improving" if diff > 0.1 else ("declining" if diff < -0.1 else "stable")
    return {
        "direction": direction,
        "window": w,
        "recent_success_rate": r_rate,
        "earlier_success_rate": e_rate,
        "finished": n,
    }
