"""The level schedule: a search for the largest removal the tolerance allows.

The run keeps a bracket of *heads removed in total* (of the starting model's heads):
``accepted``, the most a kept cycle has removed, and ``rejected``, the fewest a rolled-back
cycle tried to remove (``None`` until one fails). :func:`next_removal` says how many heads the
next cycle should have removed in total, and why:

- **expand** while nothing has failed: the first cycle removes ``first`` heads; after that the
  total grows by the share of the tolerance the last kept cycle left unused,
  ``accepted * (1 + margin)`` (x2 when perplexity did not rise at all), by at least one head
  per layer;
- **bisect** once a cycle failed: the middle of the bracket;
- **resolved** when the bracket is narrower than one head per layer (``resolution``), or no
  head is left to remove below the bracket: the run stops pruning (its remaining cycles only
  learn).

One cycle never removes more than :data:`MAX_PRUNING_LEVEL` of the heads it starts with.
:func:`update_search` moves the bracket after a cycle. Both are pure functions of plain numbers;
the search's state is a frozen :class:`RemovalSearch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from selfimprove.errors import ConfigError
from selfimprove.plasticity._adaptation import MAX_PRUNING_LEVEL

__all__ = ["RemovalSearch", "next_removal", "update_search"]


@dataclass(frozen=True)
class RemovalSearch:
    """The bracket of heads removed in total.

    Attributes:
        total: Heads of the starting model.
        removable: Most heads that may go in total (every layer keeps its minimum).
        resolution: One head per layer: the bracket is resolved when narrower than this.
        accepted: Heads removed by the model as last kept (the bracket's lower end).
        rejected: Fewest heads removed by a rolled-back cycle (upper end), ``None`` if none.
        margin: Share of the tolerance the last kept cycle left unused (1: all of it).
    """

    total: int
    removable: int
    resolution: int
    accepted: int = 0
    rejected: int | None = None
    margin: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.removable < self.total or self.resolution < 1:
            raise ConfigError(
                "a removal search needs 0 <= removable < total and resolution >= 1, but got "
                f"{self.total=}, {self.removable=}, {self.resolution=}."
            )
        if not 0 <= self.accepted <= self.removable:
            raise ConfigError(f"accepted must be in [0, removable], but got {self.accepted=}.")

    @property
    def upper(self) -> int:
        """The most heads the next cycle may have removed in total."""
        cap = self.removable if self.rejected is None else self.rejected - 1
        return min(self.removable, cap)

    def to_dict(self) -> dict[str, int | float | None]:
        """Plain-data form (for ``metrics.jsonl``)."""
        return {
            "total": self.total,
            "removable": self.removable,
            "resolution": self.resolution,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "margin": self.margin,
        }


def next_removal(search: RemovalSearch, *, first: int) -> tuple[int | None, str]:
    """Heads the next cycle should have removed in total, or ``None`` when resolved.

    Args:
        search: The bracket so far.
        first: Heads the first cycle removes (the initial level times the heads).

    Returns:
        ``(heads removed in total after the next cycle, or None; why)``. The target is always
        in ``(accepted, upper]``.
    """
    s = search
    lo, hi = s.accepted, s.rejected
    if s.upper <= lo:
        bound = "the minimum every layer keeps" if hi is None else f"{hi} failed"
        return None, f"resolved at {lo} of {s.total} heads removed: no head left below ({bound})"
    if hi is not None and hi - lo < s.resolution:
        return None, (
            f"resolved: {lo} of {s.total} heads removed kept, {hi} failed; the bracket is "
            f"narrower than one head per layer ({s.resolution})"
        )
    current = s.total - lo
    per_cycle = max(1, math.floor(MAX_PRUNING_LEVEL * current))
    if hi is None:
        if lo == 0:
            want, why = max(1, first), f"expand: first level, {max(1, first)} heads"
        else:
            margin = min(1.0, max(0.0, s.margin))
            want = max(lo + s.resolution, round(lo * (1 + margin)))
            why = (
                f"expand: {lo} kept with {margin:.0%} of the tolerance left, "
                f"x{1 + margin:.2f} (at least one head per layer more)"
            )
    else:
        want = (lo + hi) // 2
        why = f"bisect: {lo} kept, {hi} failed"
    target = min(want, s.upper, lo + per_cycle)
    target = max(target, lo + 1)
    if target < want:
        why += f"; capped at {target} (at most {MAX_PRUNING_LEVEL:.0%} of the heads per cycle)"
    return target, why


def update_search(
    search: RemovalSearch, *, removed: int, accepted: bool, margin: float
) -> RemovalSearch:
    """The bracket after a cycle that left ``removed`` heads removed in total.

    Args:
        search: The bracket before the cycle.
        removed: Heads removed in total by the candidate (pruned minus grown heads kept).
        accepted: Whether the cycle was kept.
        margin: Share of the tolerance the candidate left unused.

    Returns:
        The new bracket: a kept cycle raises ``accepted`` (and lowers ``rejected`` if it
        passed it); a rolled-back cycle lowers ``rejected``.
    """
    if accepted:
        rejected = search.rejected
        if rejected is not None and removed >= rejected:
            rejected = None  # a kept cycle beat a failure that was due to noise
        return replace(
            search,
            accepted=min(search.removable, max(0, removed)),
            rejected=rejected,
            margin=margin,
        )
    if removed <= search.accepted:
        return search  # nothing new learned about the bracket (a failed learn-only cycle)
    rejected = removed if search.rejected is None else min(search.rejected, removed)
    return replace(search, rejected=rejected)
