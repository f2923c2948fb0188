"""Weaknesses (seed 002's identified shortfalls) and their lifecycle."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select

from selfimprove.errors import ConfigError, NotFoundError, StoreError
from selfimprove.store._convert import clean_json, to_record, utcnow
from selfimprove.store._database import Database
from selfimprove.store._schema import WeaknessRow
from selfimprove.store.records import WeaknessRecord, WeaknessStatus

__all__ = ["WeaknessRepository"]

#: Ids bound in one ``IN (...)`` (SQLite allows 32766 parameters a statement, PostgreSQL 65535).
_IDS_PER_STATEMENT = 10_000
#: The fields of a new weakness (:meth:`WeaknessRepository.add_weakness`), and those it must have.
_WEAKNESS_FIELDS = frozenset(
    {
        "name",
        "type",
        "severity",
        "impact",
        "priority",
        "description",
        "capability_id",
        "gap",
        "source",
        "evidence",
    }
)
_WEAKNESS_REQUIRED = frozenset({"name", "type", "severity", "impact", "priority"})
# Read once per capability every cycle, built once.
_CAPABILITY_WEAKNESSES = (
    select(WeaknessRow)
    .where(
        WeaknessRow.status.in_(bindparam("statuses", expanding=True)),
        WeaknessRow.capability_id == bindparam("capability_id"),
    )
    .order_by(WeaknessRow.id)
)


def _unknown(weakness_id: int | list[int]) -> NotFoundError:
    ids = f"ids {weakness_id}" if isinstance(weakness_id, list) else f"id {weakness_id}"
    return NotFoundError(f"unknown weakness {ids}; see `selfimprove engine weaknesses --all`.")


def _new_weakness(
    *,
    now: datetime,
    name: str,
    type: str,
    severity: str,
    impact: float,
    priority: float,
    description: str = "",
    capability_id: int | None = None,
    gap: float | None = None,
    source: str = "manual",
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new open weakness's column values."""
    return {
        "name": name,
        "type": type,
        "severity": severity,
        "impact": float(impact),
        "priority": float(priority),
        "description": description,
        "capability_id": capability_id,
        "gap": clean_json(gap),
        "status": WeaknessStatus.OPEN.value,
        "source": source,
        "evidence": clean_json(evidence or {}),
        "resolution": "",
        "created_at": now,
        "updated_at": now,
    }


def _change_weakness(row: WeaknessRow, changes: Mapping[str, Any], now: datetime) -> None:
    """Set ``changes`` on a weakness's row; a status change is checked against the lifecycle.

    Raises:
        StoreError: A field weaknesses do not have.
        ConfigError: The lifecycle does not allow the status change.
    """
    fields = dict(changes)
    status = fields.pop("status", None)
    for key, value in fields.items():
        if key not in WeaknessRow.__table__.columns or key == "id":
            raise StoreError(f"weaknesses have no field {key!r}.")
        setattr(row, key, clean_json(value))
    if status is not None:
        new, old = WeaknessStatus(status), WeaknessStatus(row.status)
        if new is not old:
            if not old.can_become(new):
                raise ConfigError(
                    f"weakness {row.id} is {old.value}; it cannot become "
                    f"{new.value} (open → in_progress → resolved / wont_fix)."
                )
            row.status = new.value
            if not new.is_active():
                row.resolved_at = now
    row.updated_at = now


class WeaknessRepository(Database):
    """The ``weaknesses`` table (a part of :class:`~selfimprove.store.Store`)."""

    def add_weakness(
        self,
        *,
        name: str,
        type: str,
        severity: str,
        impact: float,
        priority: float,
        description: str = "",
        capability_id: int | None = None,
        gap: float | None = None,
        source: str = "manual",
        evidence: dict[str, Any] | None = None,
    ) -> WeaknessRecord:
        """Insert an open weakness."""
        values = _new_weakness(
            now=utcnow(),
            name=name,
            type=type,
            severity=severity,
            impact=impact,
            priority=priority,
            description=description,
            capability_id=capability_id,
            gap=gap,
            source=source,
            evidence=evidence,
        )
        return self._insert(WeaknessRow, [values], WeaknessRecord)[0]

    def add_weaknesses(self, specs: Sequence[Mapping[str, Any]]) -> list[WeaknessRecord]:
        """:meth:`add_weakness` for many, in one transaction (the inserts sent together).

        Args:
            specs: The keyword arguments of :meth:`add_weakness`, one mapping per weakness.

        Returns:
            The open weaknesses, in the order of ``specs``.

        Raises:
            StoreError: A spec without ``name``, ``type``, ``severity``, ``impact`` and
                ``priority``, or with other fields.
        """
        now = utcnow()
        values = []
        for spec in specs:
            if not _WEAKNESS_REQUIRED.issubset(spec) or not _WEAKNESS_FIELDS.issuperset(spec):
                raise StoreError(
                    f"a weakness needs {sorted(_WEAKNESS_REQUIRED)} and may have "
                    f"{sorted(_WEAKNESS_FIELDS - _WEAKNESS_REQUIRED)}; got {sorted(spec)}."
                )
            values.append(_new_weakness(now=now, **spec))
        return self._insert(WeaknessRow, values, WeaknessRecord)

    def update_weakness(self, weakness_id: int, **changes: Any) -> WeaknessRecord:
        """Change fields of a weakness; a status change is checked against the lifecycle.

        Raises:
            NotFoundError: No such weakness.
            StoreError: A field weaknesses do not have.
            ConfigError: The lifecycle does not allow the status change.
        """
        with self.transaction() as s:
            row = s.get(WeaknessRow, weakness_id)
            if row is None:
                raise _unknown(weakness_id)
            _change_weakness(row, changes, utcnow())
            s.flush()
            return to_record(WeaknessRecord, row)

    def update_weaknesses(
        self, changes: Mapping[int, Mapping[str, Any]]
    ) -> dict[int, WeaknessRecord]:
        """:meth:`update_weakness` for many weaknesses in one transaction: one read of their
        rows and the updates sent together, however many there are.

        Args:
            changes: The fields to change, by weakness id.

        Returns:
            The changed weaknesses, by id.

        Raises:
            NotFoundError: An unknown weakness (nothing is changed).
            ConfigError: A status change the lifecycle does not allow (nothing is changed).
        """
        if not changes:
            return {}
        now = utcnow()
        ids = list(changes)
        with self.transaction() as s:
            rows: dict[int, WeaknessRow] = {}
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = ids[start : start + _IDS_PER_STATEMENT]
                rows.update(
                    (r.id, r)
                    for r in s.scalars(select(WeaknessRow).where(WeaknessRow.id.in_(chunk)))
                )
            missing = sorted(set(changes) - set(rows))
            if missing:
                raise _unknown(missing)
            for weakness_id, fields in changes.items():
                _change_weakness(rows[weakness_id], fields, now)
            s.flush()
            return {i: to_record(WeaknessRecord, rows[i]) for i in changes}

    def get_weakness(self, weakness_id: int) -> WeaknessRecord:
        """The weakness with this id.

        Raises:
            NotFoundError: No such weakness.
        """
        with self.read() as s:
            row = s.get(WeaknessRow, weakness_id)
            if row is None:
                raise _unknown(weakness_id)
            return to_record(WeaknessRecord, row)

    def list_weaknesses(
        self,
        *,
        statuses: tuple[WeaknessStatus, ...] | None = None,
        capability_id: int | None = None,
        capability_ids: Collection[int] | None = None,
    ) -> list[WeaknessRecord]:
        """Weaknesses, oldest first (only those in ``statuses`` / of a capability / of the
        capabilities in ``capability_ids`` if given)."""
        with self.read() as s:
            if statuses is not None and capability_id is not None:  # the engine's, per capability
                params = {"statuses": [st.value for st in statuses], "capability_id": capability_id}
                return [
                    to_record(WeaknessRecord, r) for r in s.scalars(_CAPABILITY_WEAKNESSES, params)
                ]
            q = select(WeaknessRow).order_by(WeaknessRow.id)
            if statuses is not None:
                q = q.where(WeaknessRow.status.in_([st.value for st in statuses]))
            if capability_id is not None:
                q = q.where(WeaknessRow.capability_id == capability_id)
            if capability_ids is not None:
                q = q.where(WeaknessRow.capability_id.in_(sorted(capability_ids)))
            return [to_record(WeaknessRecord, r) for r in s.scalars(q)]
