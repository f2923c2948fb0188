"""Capabilities (what is measured, with its direction and target) and their measurements."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.orm import aliased

from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.store._convert import clean_json, to_record, utcnow
from selfimprove.store._database import Database
from selfimprove.store._schema import CapabilityRow, MeasurementRow
from selfimprove.store.records import CapabilityRecord, MeasurementRecord, MeasurementSet

__all__ = ["CapabilityRepository"]

# Run once per capability every cycle, built once (building it costs more than running it on
# an index).
_LATEST_MEASUREMENT = (
    select(MeasurementRow)
    .where(
        MeasurementRow.capability_id == bindparam("capability_id"),
        MeasurementRow.split == bindparam("split"),
    )
    .order_by(MeasurementRow.id.desc())
    .limit(1)
)


def _finite(value: float) -> float:
    """A measured value as stored: NaN for anything not finite."""
    return float(value) if math.isfinite(value) else math.nan


class CapabilityRepository(Database):
    """The ``capabilities`` and ``measurements`` tables (a part of the Store)."""

    # ------------------------------------------------------------------ capabilities
    def upsert_capability(
        self,
        name: str,
        *,
        type: str,
        direction: str,
        target: float | None,
        unit: str = "",
        description: str = "",
        baseline: float | None = None,
        model_id: int | None = None,
        objective: str | None = None,
    ) -> CapabilityRecord:
        """Register a capability, or update its description, direction and target.

        Idempotent: measurements are never dropped, and an existing baseline is kept unless
        one was never set.
        """
        now = utcnow()
        with self.transaction() as s:
            self._serialise(s, f"capability:{name}")  # two first registrations: one insert
            row = s.scalar(select(CapabilityRow).where(CapabilityRow.name == name))
            if row is None:
                values = {
                    "name": name,
                    "type": type,
                    "description": description,
                    "direction": direction,
                    "baseline": baseline,
                    "target": target,
                    "unit": unit,
                    "model_id": model_id,
                    "objective": objective,
                    "created_at": now,
                    "updated_at": now,
                }
                return self._insert(CapabilityRow, [values], CapabilityRecord, session=s)[0]
            row.type, row.description, row.direction = type, description, direction
            row.target, row.unit, row.updated_at = target, unit, now
            if row.baseline is None:
                row.baseline = baseline
            if model_id is not None:
                row.model_id, row.objective = model_id, objective
            s.flush()
            return to_record(CapabilityRecord, row)

    def set_capability_baseline(self, capability_id: int, baseline: float) -> None:
        """Set a capability's baseline."""
        with self.transaction() as s:
            row = s.get_one(CapabilityRow, capability_id)
            row.baseline = baseline

    def get_capability(self, name: str) -> CapabilityRecord:
        """The capability called ``name``.

        Raises:
            NotFoundError: No such capability.
        """
        with self.read() as s:
            row = s.scalar(select(CapabilityRow).where(CapabilityRow.name == name))
            if row is None:
                raise NotFoundError(f"unknown capability {name!r}.")
            return to_record(CapabilityRecord, row)

    def list_capabilities(
        self, model_id: int | None = None, *, model_ids: Collection[int] | None = None
    ) -> list[CapabilityRecord]:
        """Capabilities by id (of one model / of the models in ``model_ids`` if given), read as
        plain rows (every cycle reads them all)."""
        q = select(*CapabilityRow.__table__.columns).order_by(CapabilityRow.id)
        if model_id is not None:
            q = q.where(CapabilityRow.model_id == model_id)
        if model_ids is not None:
            q = q.where(CapabilityRow.model_id.in_(sorted(model_ids)))
        with self.read() as s:
            return [to_record(CapabilityRecord, r) for r in s.execute(q)]

    def list_capabilities_with_target(
        self, capability_ids: Collection[int] | None = None
    ) -> list[CapabilityRecord]:
        """The capabilities that have a target (those a weakness can be judged on), by id (only
        those of ``capability_ids`` when given).

        Read as plain rows, not ORM objects: the engine reads them every cycle, and building
        thousands of ORM objects costs ten times the query.
        """
        q = (
            select(*CapabilityRow.__table__.columns)
            .where(CapabilityRow.target.is_not(None))
            .order_by(CapabilityRow.id)
        )
        if capability_ids is not None:
            q = q.where(CapabilityRow.id.in_(sorted(capability_ids)))
        with self.read() as s:
            return [to_record(CapabilityRecord, r) for r in s.execute(q)]

    # ------------------------------------------------------------------ measurements
    def add_measurements(
        self,
        capability_id: int,
        values: Mapping[str, float],
        *,
        version_id: int | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Record one value per split (``{"validation": 0.91, "test": 0.9}``) at one time."""
        now = utcnow()
        rows = [
            {
                "capability_id": capability_id,
                "version_id": version_id,
                "split": split,
                "value": _finite(value),
                "context": clean_json(context or {}),
                "measured_at": now,
            }
            for split, value in values.items()
        ]
        self._insert(MeasurementRow, rows)

    def add_measurement_sets(self, sets: Sequence[MeasurementSet]) -> None:
        """Record many :class:`MeasurementSet` in one transaction and one statement (the same
        rows as :meth:`add_measurements` for each, in order)."""
        now = utcnow()
        rows = [
            {
                "capability_id": m.capability_id,
                "version_id": m.version_id,
                "split": split,
                "value": _finite(value),
                "context": clean_json(dict(m.context)),
                "measured_at": m.measured_at or now,
            }
            for m in sets
            for split, value in m.values.items()
        ]
        self._insert(MeasurementRow, rows)

    def list_measurements(
        self, capability_id: int | None = None, *, split: str | None = None
    ) -> list[MeasurementRecord]:
        """Measurements, oldest first (of one capability / split if given)."""
        with self.read() as s:
            q = select(MeasurementRow).order_by(MeasurementRow.id)
            if capability_id is not None:
                q = q.where(MeasurementRow.capability_id == capability_id)
            if split is not None:
                q = q.where(MeasurementRow.split == split)
            return [to_record(MeasurementRecord, r) for r in s.scalars(q)]

    def latest_measurement(
        self, capability_id: int, splits: tuple[str, ...] = ("validation", "global")
    ) -> MeasurementRecord | None:
        """The newest measurement of a capability in the first of ``splits`` that has one.

        The neural system records ``validation`` (which decides) and ``test`` (only reported)
        for data objectives and ``global`` for latency and size; the engine records ``global``.
        """
        with self.read() as s:
            for split in splits:
                row = s.scalar(
                    _LATEST_MEASUREMENT, {"capability_id": capability_id, "split": split}
                )
                if row is not None:
                    return to_record(MeasurementRecord, row)
            return None

    def count_measurements(self, capability_id: int) -> int:
        """How many measurements a capability has (every split)."""
        with self.read() as s:
            return int(
                s.scalar(
                    select(func.count(MeasurementRow.id)).where(
                        MeasurementRow.capability_id == capability_id
                    )
                )
                or 0
            )

    def latest_measurements(
        self,
        splits: tuple[str, ...] = ("validation", "global"),
        capability_ids: Collection[int] | None = None,
    ) -> dict[int, MeasurementRecord]:
        """:meth:`latest_measurement` of every capability that has one (of those in
        ``capability_ids`` when given), by capability id.

        One statement whatever the number of capabilities: for each capability the newest id
        of each split is one lookup in ``ix_measurements_capability_split_id`` (not a scan of
        its history), the first split that has one wins.

        Raises:
            ConfigError: No splits.
        """
        if not splits:
            raise ConfigError("latest_measurements needs at least one split, e.g. ('global',).")
        m = aliased(MeasurementRow)
        newest = [
            select(func.max(m.id))
            .where(m.capability_id == CapabilityRow.id, m.split == split)
            .correlate(CapabilityRow)
            .scalar_subquery()
            for split in splits
        ]
        first = func.coalesce(*newest) if len(newest) > 1 else newest[0]
        ids = select(first).select_from(CapabilityRow)
        if capability_ids is not None:
            ids = ids.where(CapabilityRow.id.in_(sorted(capability_ids)))
        # Plain rows, not ORM objects: building 3000 of those costs ten times the query.
        q = select(*MeasurementRow.__table__.columns).where(MeasurementRow.id.in_(ids))
        with self.read() as s:
            return {r.capability_id: to_record(MeasurementRecord, r) for r in s.execute(q)}

    def measured_since(self, after_id: int = 0) -> tuple[set[int], int]:
        """The capabilities measured after measurement ``after_id``, and the newest measurement
        id (``after_id`` when there is none): what a reader that keeps up needs to look at again.
        """
        with self.read() as s:
            q = select(MeasurementRow.capability_id, func.max(MeasurementRow.id)).where(
                MeasurementRow.id > after_id
            )
            rows = list(s.execute(q.group_by(MeasurementRow.capability_id)))
        return {int(r[0]) for r in rows}, max((int(r[1]) for r in rows), default=after_id)

    def prune_measurements(
        self, *, before: datetime | None = None, keep: int | None = None, dry_run: bool = False
    ) -> int:
        """Delete the measurements taken before ``before`` and / or those beyond the newest
        ``keep`` of each capability and split (the retention policy for the time series); the
        newest of each capability and split always stays, so every current value survives.

        Returns:
            How many measurements were deleted (``dry_run``: would be).

        Raises:
            ConfigError: Neither ``before`` nor ``keep``, or ``keep`` < 1.
        """
        if before is None and keep is None:
            raise ConfigError("prune_measurements needs before= (a date) or keep= (a count).")
        if keep is not None and keep < 1:
            raise ConfigError(f"keep must be >= 1 (the newest value always stays), got {keep}.")
        rank = (
            func.row_number()
            .over(
                partition_by=(MeasurementRow.capability_id, MeasurementRow.split),
                order_by=MeasurementRow.id.desc(),
            )
            .label("rank")
        )
        ranked = select(MeasurementRow.id, MeasurementRow.measured_at, rank).subquery()
        old = []
        if before is not None:
            old.append(ranked.c.measured_at < before)
        if keep is not None:
            old.append(ranked.c.rank > keep)
        doomed = select(ranked.c.id).where(ranked.c.rank > 1, or_(*old))
        with self.transaction() as s:
            if dry_run:
                return int(s.scalar(select(func.count()).select_from(doomed.subquery())) or 0)
            result = s.execute(delete(MeasurementRow).where(MeasurementRow.id.in_(doomed)))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def count_measurements_by_capability(self) -> dict[int, int]:
        """:meth:`count_measurements` of every capability that has one, in one statement."""
        with self.read() as s:
            q = select(MeasurementRow.capability_id, func.count(MeasurementRow.id)).group_by(
                MeasurementRow.capability_id
            )
            return {int(cap_id): int(n) for cap_id, n in s.execute(q)}
