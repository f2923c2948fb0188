"""`HormoneSystemController`: four levels in [0, 1] that real events move and time decays.

Hormones steer *where to look and how much to spend* — task priority, exploration, budget —
and never what counts as an improvement (only the judge decides that).

Time is the loop's own clock: one tick per improvement cycle. Half-lives are counted in
cycles, not seconds, so the same seed and history give the same levels and the same task
order on any machine, however long a cycle takes.

Events and their effect (all amounts are clipped to [0, 1]):

- ``promotion`` with a gain g (relative error reduction): dopamine += min(0.5, g);
  three promotions in a row: serotonin += 0.1 (steady success);
- ``rejection``: cortisol += 0.05; ``failure`` (exception, NaN, overrun): cortisol += 0.15;
- ``latency_missed`` (a latency target not met at observation): adrenaline += 0.1.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from selfimprove.errors import ConfigError

__all__ = [
    "DEFAULT_HORMONES",
    "HormoneEvent",
    "HormoneSpec",
    "HormoneSystemController",
]


REWARD_SEEKING = frozenset({"training", "architecture", "distillation"})
STRESS_RELATED = frozenset({"optimisation"})


@dataclass(frozen=True)
class HormoneSpec:
    """A hormone: its resting level and how fast it returns there.

    Attributes:
        name: ``dopamine``, ``serotonin``, ...
        baseline: Resting level in [0, 1].
        half_life: Cycles for the distance to the baseline to halve (> 0).
    """

    name: str
    baseline: float
    half_life: float

    def __post_init__(self) -> None:
        if not 0 <= self.baseline <= 1:
            raise ConfigError(
                f"hormone {self.name}: baseline must be in [0, 1], got {self.baseline}."
            )
        if self.half_life <= 0:
            raise ConfigError(f"hormone {self.name}: half_life must be > 0, got {self.half_life}.")


DEFAULT_HORMONES: tuple[HormoneSpec, ...] = (
    HormoneSpec("dopamine", 0.5, 3.0),
    HormoneSpec("serotonin", 0.5, 6.0),
    HormoneSpec("cortisol", 0.3, 3.0),
    HormoneSpec("adrenaline", 0.2, 2.0),
)


class HormoneEvent(str, enum.Enum):
    """Events that move hormone levels."""

    PROMOTION = "promotion"
    REJECTION = "rejection"
    FAILURE = "failure"
    LATENCY_MISSED = "latency_missed"


class HormoneSystemController:
    """Hormone levels, their decay, and what they steer.

    Args:
        specs: The hormones (default: dopamine, serotonin, cortisol, adrenaline).
        levels: Starting levels (default: the baselines).
    """

    def __init__(
        self,
        specs: tuple[HormoneSpec, ...] = DEFAULT_HORMONES,
        levels: Mapping[str, float] | None = None,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self._levels = {s.name: s.baseline for s in specs}
        self._streak = 0
        for name, value in (levels or {}).items():
            self.set_level(name, value)

    # ------------------------------------------------------------------ levels
    def get_hormone_levels(self) -> dict[str, float]:
        """Current levels (a copy)."""
        return dict(self._levels)

    def level(self, name: str) -> float:
        return self._levels[self._known(name)]

    def set_level(self, name: str, value: float) -> None:
        """Set a level directly (clipped to [0, 1])."""
        if not math.isfinite(value):
            raise ConfigError(f"hormone level must be a finite number, got {value!r}.")
        self._levels[self._known(name)] = min(1.0, max(0.0, float(value)))

    def release(self, name: str, amount: float) -> float:
        """Add ``amount`` (may be negative) to a level; returns the new level."""
        self.set_level(name, self.level(name) + amount)
        return self.level(name)

    def tick(self, cycles: float = 1.0) -> None:
        """Let ``cycles`` of the loop's clock pass: every level decays toward its baseline."""
        if cycles < 0:
            raise ConfigError(f"cannot tick a negative number of cycles, got {cycles}.")
        for name, spec in self.specs.items():
            keep = 0.5 ** (cycles / spec.half_life)
            self._levels[name] = spec.baseline + (self._levels[name] - spec.baseline) * keep

    # ------------------------------------------------------------------ events
    def on_event(self, event: HormoneEvent | str, gain: float = 0.0) -> None:
        """Move levels for a real event (see the module docstring for the amounts)."""
        event = HormoneEvent(event)
        if event is HormoneEvent.PROMOTION:
            self.release("dopamine", min(0.5, max(0.0, gain)))
            self._streak += 1
            if self._streak >= 3:
                self.release("serotonin", 0.1)
        elif event is HormoneEvent.REJECTION:
            self.release("cortisol", 0.05)
            self._streak = 0
        elif event is HormoneEvent.FAILURE:
            self.release("cortisol", 0.15)
            self._streak = 0
        elif event is HormoneEvent.LATENCY_MISSED:
            self.release("adrenaline", 0.1)

    # ------------------------------------------------------------------ what they steer
    def priority_multiplier(self, kind: str | None = None) -> float:
        """Seed 000's rule: dopamine > 0.7 → ×1.5 for reward-seeking improvements; cortisol
        > 0.6 → ×1.3 for stress-related ones.

        Reward-seeking kinds chase quality (``training``, ``architecture``, ``distillation``);
        the stress-related kind relieves pressure on resources (``optimisation``). With
        ``kind=None`` both multipliers apply, as in the seed's snippet.
        """
        m = 1.0
        if self._levels.get("dopamine", 0.5) > 0.7 and (kind is None or kind in REWARD_SEEKING):
            m *= 1.5
        if self._levels.get("cortisol", 0.3) > 0.6 and (kind is None or kind in STRESS_RELATED):
            m *= 1.3
        return m

    def exploration(self) -> float:
        """Share of choices left to exploration, in [0.05, 0.5]: stress (cortisol) and urgency
        (adrenaline) widen the search; contentment (serotonin) narrows it."""
        lv = self._levels
        raw = 0.15 + 0.3 * lv.get("cortisol", 0.3) + 0.2 * lv.get("adrenaline", 0.2)
        raw -= 0.2 * lv.get("serotonin", 0.5)
        return min(0.5, max(0.05, raw))

    def budget_multiplier(self) -> float:
        """Budget scale in [0.5, 2]: dopamine (things are working) spends more, cortisol less."""
        lv = self._levels
        raw = 1.0 + (lv.get("dopamine", 0.5) - 0.5) - 0.5 * (lv.get("cortisol", 0.3) - 0.3)
        return min(2.0, max(0.5, raw))

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "levels": dict(self._levels), "streak": self._streak}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], specs: tuple[HormoneSpec, ...] = DEFAULT_HORMONES
    ) -> HormoneSystemController:
        ctrl = cls(specs, levels=data.get("levels", {}))
        ctrl._streak = int(data.get("streak", 0))
        return ctrl

    def _known(self, name: str) -> str:
        if name not in self.specs:
            raise ConfigError(f"unknown hormone {name!r}; known: {sorted(self.specs)}.")
        return name
