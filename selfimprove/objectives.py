"""Objectives: what a model is judged on, with a direction, a target and an error-like form.

Every comparison between two metric values goes through an :class:`Objective`, never a bare
``>``: accuracy is better higher, latency better lower, and the judge works on the *error-like*
form of both (``1 - accuracy``, the latency itself) so that "a 10 % improvement" means the same
thing for every objective: a 10 % relative reduction of the error-like form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from selfimprove._enums import ValueEnum
from selfimprove.errors import TaskError

__all__ = ["DETERMINISTIC_OBJECTIVES", "EFFICIENCY_OBJECTIVES", "Direction", "Objective"]

#: Objectives about what a model costs rather than how good it is (every strategy, the judge,
#: the gain model and the engine classify objectives with this one tuple).
EFFICIENCY_OBJECTIVES: tuple[str, ...] = ("latency_ms", "size_bytes", "parameters")
#: Efficiency objectives whose measurement has no noise: the same model always gives the same
#: value.
DETERMINISTIC_OBJECTIVES: tuple[str, ...] = ("size_bytes", "parameters")


class Direction(ValueEnum):
    """Which way is better for an objective."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


@dataclass(frozen=True)
class Objective:
    """One measurable goal of a model.

    Attributes:
        name: Metric name, e.g. ``"accuracy"``, ``"mse"``, ``"latency_ms"``.
        direction: Whether lower or higher values are better.
        target: The value at which the objective counts as met (``None``: no target).
        unit: Display unit (``""``, ``"ms"``, ``"bytes"``).
        ideal: The best value the metric can reach (``1.0`` for accuracy, ``0.0`` for a loss);
            the error-like form is the distance to it. Required for ``MAXIMIZE``.
        tolerance: When this objective is a *guard*, the regression still accepted: relative to
            the error-like form (``0.05`` = 5 % worse) or, with ``absolute_tolerance``, in the
            metric's own units (``0.01`` = one accuracy point).
        absolute_tolerance: Whether ``tolerance`` is in the metric's units.
        min_change: As a guard, a regression no larger than this, in the metric's units, is
            accepted whatever its relative size (for latency: 0.05 ms, so that one extra
            Python call on a 0.03 ms model is not a "+150 %" regression).
        limit: As a guard, a bound the metric must never cross, whatever the tolerance (e.g. a
            maximum checkpoint size in bytes); ``None``: no bound.
    """

    name: str
    direction: Direction
    target: float | None = None
    unit: str = ""
    ideal: float | None = None
    tolerance: float = 0.05
    absolute_tolerance: bool = False
    min_change: float = 0.0
    limit: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise TaskError(
                f"Objective name must be a non-empty identifier, but got {self.name!r}."
            )
        if not isinstance(self.direction, Direction):
            try:
                object.__setattr__(self, "direction", Direction(self.direction))
            except ValueError:
                raise TaskError(
                    f"Objective {self.name!r}: direction must be 'minimize' or 'maximize', "
                    f"but got {self.direction!r}."
                ) from None
        if self.direction is Direction.MAXIMIZE and self.ideal is None:
            raise TaskError(
                f"Objective {self.name!r} is maximized, so it needs an ideal value "
                "(e.g. ideal=1.0 for accuracy) to define its error-like form."
            )
        if self.tolerance < 0:
            raise TaskError(
                f"Objective {self.name!r}: tolerance must be >= 0, but got {self.tolerance=}."
            )

    @property
    def ideal_value(self) -> float:
        """The best reachable value (0 for a minimized objective unless set)."""
        return 0.0 if self.ideal is None else float(self.ideal)

    def error(self, value: float) -> float:
        """Error-like form of ``value``: its distance to the ideal, lower is better."""
        if self.direction is Direction.MAXIMIZE:
            return self.ideal_value - value
        return value - self.ideal_value

    def is_better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` for this objective."""
        return self.error(a) < self.error(b)

    def relative_improvement(self, before: float, after: float) -> float:
        """Relative reduction of the error-like form from ``before`` to ``after``.

        ``0.1`` means the error shrank by 10 %; negative values are regressions. NaN in either
        value gives NaN (a diverged model is never an improvement).
        """
        if not (math.isfinite(before) and math.isfinite(after)):
            return math.nan
        e_before, e_after = self.error(before), self.error(after)
        if e_before <= 0:
            # Already ideal: any further change is either no gain or a regression.
            return 0.0 if e_after <= 0 else -math.inf
        return (e_before - e_after) / e_before

    def regression(self, before: float, after: float) -> float:
        """How much worse ``after`` is, in the units ``tolerance`` uses (negative: better)."""
        if self.absolute_tolerance:
            return self.error(after) - self.error(before)
        return -self.relative_improvement(before, after)

    def within_tolerance(self, before: float, after: float) -> bool:
        """Whether ``after`` regresses from ``before`` by no more than ``tolerance``."""
        reg = self.regression(before, after)
        if not math.isfinite(reg):
            return False
        if self.error(after) - self.error(before) <= self.min_change:
            return True
        return reg <= self.tolerance + 1e-12

    def within_limit(self, value: float) -> bool:
        """Whether ``value`` is on the good side of :attr:`limit` (always true without one)."""
        if self.limit is None:
            return True
        return math.isfinite(value) and self.error(value) <= self.error(self.limit)

    def format_regression(self, value: float) -> str:
        """``value`` (from :meth:`regression`) as text: points or percent."""
        return (
            f"{value:+.4g} {self.unit or 'units'}" if self.absolute_tolerance else f"{value:+.1%}"
        )

    def meets_target(self, value: float) -> bool:
        """Whether ``value`` is at or beyond the target (always false without a target)."""
        if self.target is None or not math.isfinite(value):
            return False
        return self.error(value) <= self.error(self.target)

    def gap(self, value: float) -> float:
        """Direction-aware relative shortfall from the target: 0 when met.

        ``(target - value) / |target|`` for a maximized objective and
        ``(value - target) / |target|`` for a minimized one, so a 10 s latency against a 2 s
        target is a gap of 4.0 (400 %) and an accuracy of 0.7 against 0.95 a gap of 0.26.
        """
        if self.target is None or self.meets_target(value):
            return 0.0
        if not math.isfinite(value):
            return math.inf
        shortfall = abs(self.error(value) - self.error(self.target))
        return shortfall / abs(self.target) if self.target != 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for manifests and the store)."""
        return {
            "name": self.name,
            "direction": self.direction.value,
            "target": self.target,
            "unit": self.unit,
            "ideal": self.ideal,
            "tolerance": self.tolerance,
            "absolute_tolerance": self.absolute_tolerance,
            "min_change": self.min_change,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Objective:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=data["name"],
            direction=Direction(data["direction"]),
            target=data.get("target"),
            unit=data.get("unit", ""),
            ideal=data.get("ideal"),
            tolerance=data.get("tolerance", 0.05),
            absolute_tolerance=data.get("absolute_tolerance", False),
            min_change=data.get("min_change", 0.0),
        )
