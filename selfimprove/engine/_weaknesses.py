"""What a capability's newest value does to its automatic weaknesses: a pure decision.

:func:`plan_weakness` reads one capability, its newest measurement and its active weaknesses,
and returns a :class:`WeaknessPlan`: resolve them (the target is met), open one (a gap and no
automatic weakness yet), update the automatic one (its gap or value changed), or leave it as
it is. The engine reads every capability's inputs in a few queries and writes only the plans
that change something, so its per-cycle scan costs the same few statements at 10 or 3000
capabilities and an unchanged weakness is not rewritten.

A stored weakness is the persisted form of the planner's
:class:`~selfimprove.brain.planning.Weakness`: :func:`record_fields` builds one from the other
and :func:`same_weakness` compares them, in the one vocabulary of types and severities.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfimprove.brain.planning import Weakness
from selfimprove.engine._types import SEVERITY_WEIGHT, WeaknessType, severity_for_gap
from selfimprove.measure.stats import as_direction
from selfimprove.objectives import EFFICIENCY_OBJECTIVES, Direction, Objective
from selfimprove.store import (
    CapabilityRecord,
    MeasurementRecord,
    WeaknessRecord,
    WeaknessStatus,
    clean_json,
)

__all__ = [
    "ACTIVE",
    "EVIDENCE_KEPT",
    "WeaknessAction",
    "WeaknessPlan",
    "capability_objective",
    "plan_weakness",
    "priority",
    "record_fields",
    "same_weakness",
    "weakness_type_for",
]

#: Evidence entries kept per weakness (the oldest are dropped beyond this).
EVIDENCE_KEPT = 100
#: The statuses of a weakness that still calls for work.
ACTIVE = (WeaknessStatus.OPEN, WeaknessStatus.IN_PROGRESS)
#: Objectives and units of the neural system that describe cost, not quality.
_EFFICIENCY_OBJECTIVES = frozenset(EFFICIENCY_OBJECTIVES)
_EFFICIENCY_UNITS = frozenset(
    {"s", "sec", "seconds", "ms", "us", "µs", "ns", "bytes", "kb", "mb", "gb", "mib", "gib"}
)
#: The fields of an automatic weakness that its capability's newest value decides.
_DERIVED = ("severity", "impact", "priority", "gap", "description")
#: What an observation says (its measurement id and time only say where it came from).
_OBSERVED = ("value", "target", "direction")


def capability_objective(cap: CapabilityRecord) -> Objective:
    """The capability as an :class:`Objective`, for its direction-aware gap and target test.

    ``ideal`` only shifts the error-like form, which cancels in ``gap`` and ``meets_target``;
    a maximised objective needs one, so the target stands in.
    """
    direction = as_direction(cap.direction)
    ideal = (
        (cap.target if cap.target is not None else 0.0) if direction is Direction.MAXIMIZE else None
    )
    return Objective("capability", direction, target=cap.target, unit=cap.unit, ideal=ideal)


def weakness_type_for(cap: CapabilityRecord) -> WeaknessType:
    """The type of a capability's gaps: its own type when that is a weakness type, else
    ``efficiency`` for time and size objectives or units, else ``capability_gap``."""
    try:
        return WeaknessType(cap.type)
    except ValueError:
        pass
    if cap.objective in _EFFICIENCY_OBJECTIVES or cap.unit.lower() in _EFFICIENCY_UNITS:
        return WeaknessType.EFFICIENCY
    return WeaknessType.CAPABILITY_GAP


def priority(severity: str, impact: float) -> float:
    """A weakness's priority: its severity's weight × its impact."""
    return SEVERITY_WEIGHT[severity] * impact


class WeaknessAction(str, enum.Enum):
    """What a capability's newest value does to its weaknesses."""

    NONE = "none"  # no target, no finite value, or at target with nothing open: no change
    RESOLVE = "resolve"  # the target is met: every active weakness of it is resolved
    OPEN = "open"  # short of the target and no automatic weakness yet
    UPDATE = "update"  # the automatic weakness's gap or value changed
    UNCHANGED = "unchanged"  # the automatic weakness already says this: nothing is written


@dataclass(frozen=True)
class WeaknessPlan:
    """The decision of :func:`plan_weakness` for one capability, as data.

    Attributes:
        action: What happens.
        reason: Why, in words: the resolution of resolved weaknesses, else the description.
        capability_id: The capability.
        model_id: Its model (for the events), if any.
        changes: The fields to set, by weakness id (``resolve``: every active weakness;
            ``update``: the automatic one).
        new: The fields of the weakness to open (``open``), as
            :meth:`~selfimprove.store.Store.add_weakness` takes them.
        kept: The weakness left as it is (``unchanged``).
    """

    action: WeaknessAction
    reason: str
    capability_id: int
    model_id: int | None = None
    changes: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    new: Mapping[str, Any] | None = None
    kept: WeaknessRecord | None = None


def _unit(unit: str) -> str:
    """A unit as it follows a number: ``" points"``, ``" ms"``, but ``"%"`` (and nothing for
    no unit); a word glued to its number read as "0.97points"."""
    unit = unit.strip()
    return unit if not unit or unit in ("%", "‰", "°") else f" {unit}"


def _observations(w: WeaknessRecord) -> list[dict[str, Any]]:
    seen = w.evidence.get("observations", [])
    return list(seen) if isinstance(seen, list) else []


def plan_weakness(
    cap: CapabilityRecord,
    measurement: MeasurementRecord | None,
    active: Sequence[WeaknessRecord],
) -> WeaknessPlan:
    """What ``measurement``, the newest of ``cap``, does to its ``active`` weaknesses.

    Meeting the target resolves every active weakness of the capability, with the
    measurement as the last evidence. Short of it, the automatic weakness is opened, or
    updated with the new severity, gap and description and the observation added to its
    evidence; when it already says this (the same value against the same target: a
    re-measurement that found nothing new), it is left as it is.

    Args:
        cap: The capability.
        measurement: Its newest measurement (``None``: never measured).
        active: Its open and in-progress weaknesses, oldest first.

    Returns:
        The plan; nothing is written here.
    """
    if measurement is None or cap.target is None or not math.isfinite(measurement.value):
        why = "no target" if cap.target is None else "no finite measurement"
        return WeaknessPlan(WeaknessAction.NONE, why, cap.id, cap.model_id)
    value, target = measurement.value, cap.target
    obj = capability_objective(cap)
    obs: dict[str, Any] = {
        "measurement_id": measurement.id,
        "value": value,
        "target": target,
        "direction": cap.direction,
        "at": measurement.measured_at.isoformat() + "Z",
    }
    if obj.meets_target(value):
        if not active:
            return WeaknessPlan(WeaknessAction.NONE, "meets the target", cap.id, cap.model_id)
        why = (
            f"measurement {measurement.id}: {value:.6g}{_unit(cap.unit)} meets the target "
            f"{target:g}{_unit(cap.unit)} ({cap.direction})"
        )
        resolved = {**obs, "gap": 0.0}
        changes = {
            w.id: {
                "status": WeaknessStatus.RESOLVED,
                "resolution": why,
                "evidence": {
                    **w.evidence,
                    "observations": [*_observations(w), resolved][-EVIDENCE_KEPT:],
                },
            }
            for w in active
        }
        return WeaknessPlan(WeaknessAction.RESOLVE, why, cap.id, cap.model_id, changes=changes)
    gap = obj.gap(value)
    sev = severity_for_gap(gap)
    impact = sev.default_impact
    obs["gap"] = gap
    description = (
        f"{cap.name} is {value:.6g}{_unit(cap.unit)} against a target of "
        f"{target:g}{_unit(cap.unit)} "
        f"({'lower' if cap.direction == Direction.MINIMIZE.value else 'higher'} is better): "
        f"{gap:.0%} short"
    )
    derived: dict[str, Any] = {
        "severity": sev.value,
        "impact": impact,
        "priority": priority(sev.value, impact),
        "gap": gap,
        "description": description,
    }
    auto = [w for w in active if w.source == "auto"]
    if not auto:
        new = {
            "name": f"{cap.name} short of target",
            "type": weakness_type_for(cap).value,
            **derived,
            "capability_id": cap.id,
            "source": "auto",
            "evidence": {"observations": [obs]},
        }
        return WeaknessPlan(WeaknessAction.OPEN, description, cap.id, cap.model_id, new=new)
    w = auto[0]
    seen = _observations(w)
    last = seen[-1] if seen else {}
    if all(clean_json(obs[k]) == last.get(k) for k in _OBSERVED) and all(
        clean_json(derived[k]) == getattr(w, k) for k in _DERIVED
    ):
        return WeaknessPlan(WeaknessAction.UNCHANGED, description, cap.id, cap.model_id, kept=w)
    changes = {
        w.id: {**derived, "evidence": {**w.evidence, "observations": [*seen, obs][-EVIDENCE_KEPT:]}}
    }
    return WeaknessPlan(WeaknessAction.UPDATE, description, cap.id, cap.model_id, changes=changes)


def record_fields(planned: Weakness, capability: CapabilityRecord | None = None) -> dict[str, Any]:
    """The stored form of a planner weakness, as :meth:`~selfimprove.store.Store.add_weakness`
    takes it: its type, severity, impact and priority in the one vocabulary, its gap and reason.

    Args:
        planned: The planner's weakness (one model, one objective, one kind of task).
        capability: The capability it concerns (the neural system's ``<model>/<objective>``).
    """
    sev = planned.severity
    return {
        "name": f"{planned.model}/{planned.objective}: {planned.kind}",
        "type": planned.type.value,
        "severity": sev.value,
        "impact": planned.impact,
        "priority": priority(sev.value, planned.impact),
        "gap": planned.gap,
        "description": planned.reason,
        "capability_id": capability.id if capability is not None else None,
        "source": "planner",
        "evidence": {
            "observations": [{"kind": planned.kind, "gap": planned.gap, "teacher": planned.teacher}]
        },
    }


def same_weakness(record: WeaknessRecord, planned: Weakness) -> tuple[bool, str]:
    """Whether a stored weakness says what a planner weakness says, and why (or why not).

    They agree when their type and severity are the same and their gaps match.
    """
    if record.type != planned.type.value:
        return False, f"type {record.type} vs {planned.type.value}"
    if record.severity != planned.severity.value:
        return False, f"severity {record.severity} vs {planned.severity.value}"
    if record.gap is None or not math.isclose(record.gap, planned.gap, rel_tol=1e-9):
        return False, f"gap {record.gap} vs {planned.gap:.6g}"
    return True, f"both {planned.severity.value} {planned.type.value}, gap {planned.gap:.0%}"
