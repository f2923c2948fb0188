"""What happened and what the long-lived components remember: events, state, cycle metrics."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import select

from selfimprove.errors import StoreError
from selfimprove.store._convert import clean_json, to_record, utcnow
from selfimprove.store._database import Database
from selfimprove.store._schema import CycleMetricsRow, EventRow, StateRow
from selfimprove.store.records import EventRecord

__all__ = ["EventRepository"]

_EVENT_FIELDS = frozenset({"kind", "message", "model_id", "payload"})
_CYCLE_METRICS_FIELDS = frozenset(CycleMetricsRow.__table__.columns.keys()) - {"id"}


class EventRepository(Database):
    """The ``events``, ``state`` and ``cycle_metrics`` tables (a part of the Store)."""

    # ------------------------------------------------------------------ events
    def add_event(
        self,
        kind: str,
        message: str = "",
        *,
        model_id: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> EventRecord:
        """Append one event."""
        values = {
            "kind": kind,
            "model_id": model_id,
            "message": message,
            "payload": clean_json(payload or {}),
            "created_at": utcnow(),
        }
        return self._insert(EventRow, [values], EventRecord)[0]

    def add_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Record many events in one transaction and one statement (the rows :meth:`add_event`
        writes for each, in order).

        Args:
            events: Each with ``kind`` and optionally ``message``, ``model_id``, ``payload``.

        Raises:
            StoreError: An event without a kind, or with other fields.
        """
        now = utcnow()
        rows = []
        for e in events:
            if set(e) - _EVENT_FIELDS or not e.get("kind"):
                raise StoreError(
                    f"an event needs a kind and may have message, model_id, payload; got {e!r}."
                )
            rows.append(
                {
                    "kind": e["kind"],
                    "model_id": e.get("model_id"),
                    "message": e.get("message", ""),
                    "payload": clean_json(e.get("payload") or {}),
                    "created_at": now,
                }
            )
        self._insert(EventRow, rows)

    def list_events(
        self, *, kind: str | None = None, model_id: int | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        """Events, newest first (of one kind / model if given; the newest ``limit``)."""
        with self.read() as s:
            q = select(EventRow).order_by(EventRow.id.desc())
            if kind is not None:
                q = q.where(EventRow.kind == kind)
            if model_id is not None:
                q = q.where(EventRow.model_id == model_id)
            if limit is not None:
                q = q.limit(limit)
            return [to_record(EventRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ component state
    def save_state(self, key: str, value: dict[str, Any]) -> None:
        """Store a component's JSON state under ``key`` (replacing the previous one)."""
        with self.transaction() as s:
            self._serialise(s, f"state:{key}")  # two first saves must not both insert
            row = s.get(StateRow, key)
            if row is None:
                values = {"key": key, "value": clean_json(value), "updated_at": utcnow()}
                self._insert(StateRow, [values], session=s)
            else:
                row.value, row.updated_at = clean_json(value), utcnow()

    def load_state(self, key: str) -> dict[str, Any] | None:
        """The JSON state stored under ``key``, or ``None``."""
        with self.read() as s:
            row = s.get(StateRow, key)
            return dict(row.value) if row is not None else None

    # ------------------------------------------------------------------ cycle metrics
    def add_cycle_metrics(self, **values: Any) -> None:
        """Record one ``SelfImprovementMetrics`` row (see the schema for the fields).

        Raises:
            StoreError: A field cycle metrics do not have.
        """
        unknown = sorted(set(values) - _CYCLE_METRICS_FIELDS)
        if unknown:
            raise StoreError(
                f"cycle metrics have no fields {unknown}; use {sorted(_CYCLE_METRICS_FIELDS)}."
            )
        self._insert(CycleMetricsRow, [clean_json(values)])

    def list_cycle_metrics(
        self, limit: int | None = None, *, iterations: Collection[int] | None = None
    ) -> list[dict[str, Any]]:
        """Cycle metrics, oldest first (the newest ``limit`` / those of ``iterations`` when
        given)."""
        with self.read() as s:
            q = select(CycleMetricsRow).order_by(CycleMetricsRow.id.desc())
            if iterations is not None:
                q = q.where(CycleMetricsRow.iteration.in_(sorted(iterations)))
            if limit is not None:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            cols = [c.name for c in CycleMetricsRow.__table__.columns if c.name != "id"]
            return [{c: getattr(r, c) for c in cols} for r in reversed(rows)]
