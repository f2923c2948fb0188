"""The engine's weaknesses: opened, updated and resolved from capabilities, or named by hand.

What a capability's newest value does to its weaknesses is decided in
:mod:`selfimprove.engine._weaknesses` (a pure function); :class:`Weaknesses` reads the inputs
for every capability at once and writes only the plans that change something.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from selfimprove.engine._actors import Actor
from selfimprove.engine._profiles import known_capability
from selfimprove.engine._types import Severity, WeaknessType
from selfimprove.engine._weaknesses import (
    ACTIVE,
    EVIDENCE_KEPT,
    WeaknessAction,
    WeaknessPlan,
    plan_weakness,
    priority,
)
from selfimprove.errors import ConfigError
from selfimprove.store import CapabilityRecord, Store, WeaknessRecord, WeaknessStatus, utcnow

__all__ = ["Weaknesses"]

logger = logging.getLogger(__name__)


def _event(
    kind: str, message: str, payload: dict[str, Any], model_id: int | None
) -> dict[str, Any]:
    return {"kind": kind, "message": message, "payload": payload, "model_id": model_id}


def _plan_events(plans: Sequence[WeaknessPlan]) -> list[dict[str, Any]]:
    """The events of the weaknesses ``plans`` resolve (one per weakness)."""
    return [
        _event(
            f"weakness_{WeaknessStatus.RESOLVED.value}", p.reason, {"weakness_id": wid}, p.model_id
        )
        for p in plans
        if p.action is WeaknessAction.RESOLVE
        for wid in p.changes
    ]


def _as_type(value: WeaknessType | str) -> WeaknessType:
    try:
        return WeaknessType(value)
    except ValueError:
        raise ConfigError(
            f"weakness type must be one of {[t.value for t in WeaknessType]}, but got {value!r}."
        ) from None


def _as_severity(value: Severity | str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise ConfigError(
            f"severity must be one of {[s.value for s in Severity]}, but got {value!r}."
        ) from None


class Weaknesses:
    """Weaknesses with a lifecycle (open → in_progress → resolved / wont_fix), in the store.

    Args:
        store: The one store.
        actor: Who acts when a call names nobody.
    """

    def __init__(self, store: Store, actor: Actor) -> None:
        self.store = store
        self.actor = actor

    def update_for(self, cap: CapabilityRecord) -> WeaknessRecord | None:
        """Open, update or resolve the weaknesses of one capability from its latest value.

        Returns:
            Its automatic weakness when it is short of the target (opened, updated or left
            as it was), else ``None``.
        """
        if cap.target is None:
            return None
        plan = plan_weakness(
            cap,
            self.store.latest_measurement(cap.id),
            self.store.list_weaknesses(statuses=ACTIVE, capability_id=cap.id),
        )
        return self._write([plan]).get(cap.id)

    def update_all(self, capability_ids: Collection[int] | None = None) -> list[WeaknessRecord]:
        """Bring every capability's weaknesses up to date (the neural system measures its
        own capabilities without going through the engine).

        A few statements whatever the number of capabilities: the capabilities, the newest
        measurement of each and every active weakness are read in one query each, and only
        the weaknesses that change are written, together.

        Args:
            capability_ids: Only these capabilities (e.g. those measured since the last
                update: the neural system's cycles), default every one.

        Returns:
            The active weaknesses of those capabilities after it, oldest first.
        """
        if capability_ids is not None and not capability_ids:
            return []
        caps = self.store.list_capabilities_with_target(capability_ids)
        current = self.store.list_weaknesses(statuses=ACTIVE, capability_ids=capability_ids)
        if not caps:
            return current
        latest = self.store.latest_measurements(capability_ids=capability_ids)
        active: dict[int, list[WeaknessRecord]] = defaultdict(list)
        for w in current:
            if w.capability_id is not None:
                active[w.capability_id].append(w)
        plans = [plan_weakness(c, latest.get(c.id), active.get(c.id, ())) for c in caps]
        after = self._write(plans)
        closed = {wid for p in plans if p.action is WeaknessAction.RESOLVE for wid in p.changes}
        now = {w.id: w for w in current if w.id not in closed}
        now.update((w.id, w) for w in after.values() if w is not None)
        return sorted(now.values(), key=lambda w: w.id)

    def _write(self, plans: Sequence[WeaknessPlan]) -> dict[int, WeaknessRecord | None]:
        """Write what ``plans`` change, in one transaction: the updates together, the new
        weaknesses together, their events together.

        Returns:
            Each plan's automatic weakness after it (``None`` when there is none), by
            capability id.
        """
        after: dict[int, WeaknessRecord | None] = {p.capability_id: p.kept for p in plans}
        changes = {wid: fields for p in plans for wid, fields in p.changes.items()}
        opening = [(p, p.new) for p in plans if p.new is not None]
        if not changes and not opening:
            return after
        with self.store.batch():  # all of it or none (part of the caller's batch, if any)
            updated = self.store.update_weaknesses(changes)
            opened = self.store.add_weaknesses([new for _, new in opening])
            events = _plan_events(plans)
            for p in plans:
                if p.action is WeaknessAction.RESOLVE:
                    for wid in p.changes:
                        logger.info("weakness %d resolved: %s", wid, p.reason)
                elif p.action is WeaknessAction.UPDATE:
                    (wid,) = p.changes
                    after[p.capability_id] = updated[wid]
            for (p, _), w in zip(opening, opened, strict=True):
                logger.info("weakness %d opened: %s", w.id, p.reason)
                payload = {"weakness_id": w.id, "severity": w.severity, "gap": w.gap}
                events.append(_event("weakness_opened", p.reason, payload, p.model_id))
                after[p.capability_id] = w
            self.store.add_events(events)
        return after

    def close(
        self,
        w: WeaknessRecord,
        status: WeaknessStatus,
        why: str,
        evidence: dict[str, Any] | None = None,
        model_id: int | None = None,
    ) -> WeaknessRecord:
        """Close ``w`` with ``status`` (resolved or won't fix), ``why`` and a last observation."""
        ev = dict(w.evidence)
        if evidence:
            ev["observations"] = [*ev.get("observations", []), evidence][-EVIDENCE_KEPT:]
        closed = self.store.update_weakness(w.id, status=status, resolution=why, evidence=ev)
        logger.info("weakness %d %s: %s", w.id, status.value, why)
        self.store.add_event(
            f"weakness_{status.value}", why, model_id=model_id, payload={"weakness_id": w.id}
        )
        return closed

    def identify_weakness(
        self,
        name: str,
        type: WeaknessType | str,
        severity: Severity | str,
        description: str,
        impact: float | None = None,
        *,
        capability: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> WeaknessRecord:
        """Register a weakness by hand (or add evidence to the open one of that name).

        Args:
            name: Short name.
            type: ``capability_gap``, ``reliability``, ``efficiency`` or ``output_quality``.
            severity: ``critical``, ``high``, ``medium`` or ``low``.
            description: What is wrong.
            impact: 0 to 1 (default: the severity's, 0.9 / 0.7 / 0.5 / 0.3).
            capability: A capability it concerns (then reaching its target resolves it).
            evidence: What shows it (kept; appended when the weakness is named again).

        Returns:
            The weakness.

        Raises:
            ConfigError: Unknown type or severity, impact outside [0, 1].
            NotFoundError: Unknown capability.
        """
        wtype, sev = _as_type(type), _as_severity(severity)
        imp = sev.default_impact if impact is None else float(impact)
        if not 0 <= imp <= 1:
            raise ConfigError(f"impact must be in [0, 1], but got {impact=}.")
        cap = known_capability(self.store, capability) if capability else None
        obs = {"noted_at": utcnow().isoformat() + "Z", **(evidence or {})}
        fields: dict[str, Any] = {
            "type": wtype.value,
            "severity": sev.value,
            "impact": imp,
            "priority": priority(sev.value, imp),
            "description": description,
        }
        for w in self.store.list_weaknesses(statuses=ACTIVE):
            if w.name == name and w.source == "manual":
                seen = [*w.evidence.get("observations", []), obs][-EVIDENCE_KEPT:]
                return self.store.update_weakness(
                    w.id, **fields, evidence={**w.evidence, "observations": seen}
                )
        w = self.store.add_weakness(
            name=name,
            **fields,
            capability_id=cap.id if cap else None,
            source="manual",
            evidence={"observations": [obs]},
        )
        self.store.add_event(
            "weakness_opened",
            description,
            model_id=cap.model_id if cap else None,
            payload={"weakness_id": w.id, "severity": sev.value},
        )
        return w

    def analyze_weaknesses(
        self, min_impact: float = 0.0, *, include_closed: bool = False
    ) -> list[WeaknessRecord]:
        """The weaknesses to work on, most urgent first.

        Brings automatic weaknesses up to date first (every capability's latest value against
        its target), then sorts by priority (severity weight × impact), gap, age.

        Args:
            min_impact: Leave out weaknesses with a lower impact.
            include_closed: Also list resolved and won't-fix ones.

        Returns:
            Weaknesses, highest priority first.
        """
        active = self.update_all()
        found = [
            w
            for w in (self.store.list_weaknesses() if include_closed else active)
            if w.impact >= min_impact
        ]
        return sorted(found, key=lambda w: (-w.priority, -(w.gap or 0.0), w.id))

    def set_weakness_status(
        self, weakness_id: int, status: WeaknessStatus | str, note: str = ""
    ) -> WeaknessRecord:
        """Move a weakness along its lifecycle (open → in_progress → resolved / wont_fix).

        Raises:
            NotFoundError: Unknown weakness.
            ConfigError: A move the lifecycle does not allow (e.g. out of ``resolved``).
        """
        new = WeaknessStatus(status)
        w = self.store.get_weakness(weakness_id)
        if new.is_active():
            return self.store.update_weakness(weakness_id, status=new)
        return self.close(w, new, note or f"marked {new.value} by {self.actor()}")
