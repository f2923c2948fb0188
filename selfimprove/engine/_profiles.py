"""Where a capability stands: its profile from its newest measurement, and the lookup by name."""

from __future__ import annotations

import math

from selfimprove.engine._types import CapabilityProfile, severity_for_gap
from selfimprove.engine._weaknesses import capability_objective
from selfimprove.errors import NotFoundError
from selfimprove.measure.stats import describe_change
from selfimprove.store import CapabilityRecord, MeasurementRecord, Store

__all__ = ["known_capability", "pct", "profile_of"]


def pct(x: float | None) -> str:
    """A relative figure as a signed percentage (``—`` when there is none)."""
    return "—" if x is None or not math.isfinite(x) else f"{x:+.1%}"


def profile_of(cap: CapabilityRecord, m: MeasurementRecord | None, count: int) -> CapabilityProfile:
    """Where ``cap`` stands, given its newest measurement ``m`` and its number of them."""
    current = m.value if m is not None and math.isfinite(m.value) else None
    gap: float | None = None
    improvement: float | None = None
    if current is None:
        level = "unmeasured"
    elif cap.target is None:
        level = "no_target"
    else:
        obj = capability_objective(cap)
        gap = obj.gap(current)
        level = "at_target" if obj.meets_target(current) else severity_for_gap(gap).value
    if current is not None and cap.baseline is not None and cap.baseline != 0:
        improvement = describe_change(cap.baseline, current, cap.direction).improvement
    return CapabilityProfile(
        id=cap.id,
        name=cap.name,
        type=cap.type,
        description=cap.description,
        direction=cap.direction,
        unit=cap.unit,
        baseline=cap.baseline,
        target=cap.target,
        current=current,
        measurements=count,
        last_measured_at=m.measured_at if m is not None else None,
        gap=gap,
        level=level,
        improvement=improvement,
        model_id=cap.model_id,
        objective=cap.objective,
    )


def known_capability(store: Store, name: str) -> CapabilityRecord:
    """The capability called ``name``.

    Raises:
        NotFoundError: Unknown capability (the message lists the known ones).
    """
    try:
        return store.get_capability(name)
    except NotFoundError:
        known = [c.name for c in store.list_capabilities()]
        raise NotFoundError(
            f"unknown capability {name!r}; register it first with register_capability "
            f"(known: {', '.join(known[:20]) or 'none'})."
        ) from None
