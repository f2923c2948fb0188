"""Models and their versions: registration, the incumbent pointer, lineage."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from selfimprove.errors import ConfigError, IncumbentChangedError, NotFoundError, StoreError
from selfimprove.store._convert import clean_json, to_record, utcnow
from selfimprove.store._database import Database
from selfimprove.store._schema import ModelRow, VersionRow
from selfimprove.store.records import ModelRecord, VersionRecord, VersionStatus

__all__ = ["ModelRepository"]


def _flip_incumbent(
    s: Session,
    model_id: int,
    version_id: int,
    old_status: VersionStatus,
    replacing: int | None = None,
) -> None:
    """Make ``version_id`` the incumbent of ``model_id``; the previous one gets ``old_status``.

    The model's row is locked first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's write
    transactions hold the database's write lock from their start), so two processes promoting
    at once take turns and each sees the other's incumbent.

    Args:
        replacing: When given, the version the promotion was decided against: refused unless
            it is still the incumbent (compare and swap).

    Raises:
        NotFoundError: The version belongs to another model.
        IncumbentChangedError: ``replacing`` is no longer the incumbent.
    """
    model = s.get_one(ModelRow, model_id, with_for_update=True, populate_existing=True)
    if replacing is not None and model.incumbent_version_id != replacing:
        current = s.get(VersionRow, model.incumbent_version_id or 0)
        raise IncumbentChangedError(
            f"the incumbent of {model.name!r} changed to v{current.number if current else '?'} "
            "meanwhile (another process promoted or rolled back); a candidate judged against "
            "the previous incumbent is not promoted over it."
        )
    now = utcnow()
    if model.incumbent_version_id is not None and model.incumbent_version_id != version_id:
        old = s.get_one(VersionRow, model.incumbent_version_id)
        old.status, old.retired_at = old_status.value, now
    new = s.get_one(VersionRow, version_id)
    if new.model_id != model_id:
        raise NotFoundError(f"version id {version_id} does not belong to model {model.name!r}.")
    new.status, new.retired_at = VersionStatus.INCUMBENT.value, None
    model.incumbent_version_id = version_id


class ModelRepository(Database):
    """The ``models`` and ``versions`` tables (a part of :class:`~selfimprove.store.Store`)."""

    # ------------------------------------------------------------------ models
    def add_model(self, name: str, task: str, family: str, description: str = "") -> ModelRecord:
        """Insert a model (no versions yet).

        Raises:
            ConfigError: A model of that name is registered already.
        """
        taken = ConfigError(f"a model named {name!r} is already registered; pick another name.")
        values = {
            "name": name,
            "task": task,
            "family": family,
            "description": description,
            "created_at": utcnow(),
        }
        try:
            with self.transaction() as s:
                if s.scalar(select(ModelRow.id).where(ModelRow.name == name)) is not None:
                    raise taken
                return self._insert(ModelRow, [values], ModelRecord, session=s)[0]
        except StoreError as exc:  # another process inserted the name between read and write
            if isinstance(exc.__cause__, IntegrityError) and self.find_model(name) is not None:
                raise taken from None
            raise

    def find_model(self, name: str) -> ModelRecord | None:
        """The model called ``name``, or ``None``."""
        with self.read() as s:
            row = s.scalar(select(ModelRow).where(ModelRow.name == name))
            return to_record(ModelRecord, row) if row is not None else None

    def get_model(self, name: str) -> ModelRecord:
        """The model called ``name``.

        Raises:
            NotFoundError: No such model.
        """
        record = self.find_model(name)
        if record is None:
            known = [m.name for m in self.list_models()]
            raise NotFoundError(
                f"unknown model {name!r}; registered models: {', '.join(known) or 'none'} "
                "(see `selfimprove models`)."
            )
        return record

    def model_by_id(self, model_id: int) -> ModelRecord:
        """The model with this id.

        Raises:
            NotFoundError: No such model.
        """
        with self.read() as s:
            row = s.get(ModelRow, model_id)
            if row is None:
                raise NotFoundError(f"unknown model id {model_id}.")
            return to_record(ModelRecord, row)

    def list_models(self, ids: Collection[int] | None = None) -> list[ModelRecord]:
        """Every model (those of ``ids`` when given), oldest first."""
        # Plain rows, not ORM objects: read every cycle, and building thousands of ORM objects
        # costs several times the query.
        q = select(*ModelRow.__table__.columns).order_by(ModelRow.id)
        if ids is not None:
            q = q.where(ModelRow.id.in_(sorted(ids)))
        with self.read() as s:
            return [to_record(ModelRecord, r) for r in s.execute(q)]

    def model_heads(self) -> list[tuple[int, str, int | None]]:
        """Every model's id, name and incumbent version id, oldest first, as plain tuples: what
        a cycle needs to tell which of its models changed (10,000 in a few milliseconds, where
        :meth:`list_models` takes tens)."""
        q = select(ModelRow.id, ModelRow.name, ModelRow.incumbent_version_id).order_by(ModelRow.id)
        with self.read() as s:
            return [(int(i), str(name), inc) for i, name, inc in s.execute(q)]

    # ------------------------------------------------------------------ versions
    def add_version(
        self,
        *,
        model_id: int,
        number: int,
        parent_id: int | None,
        status: VersionStatus,
        strategy: str,
        origin: str,
        params: dict[str, Any],
        metrics: dict[str, Any],
        checkpoint_path: str,
        manifest_path: str,
        sha256: str,
        size_bytes: int,
    ) -> VersionRecord:
        """Insert a version row; with ``status=INCUMBENT`` the pointer moves in the same
        transaction (the previous incumbent becomes a backup)."""
        values = {
            "model_id": model_id,
            "number": number,
            "parent_id": parent_id,
            "status": VersionStatus.CANDIDATE.value,
            "strategy": strategy,
            "origin": origin,
            "params": clean_json(params),
            "metrics": clean_json(metrics),
            "checkpoint_path": checkpoint_path,
            "manifest_path": manifest_path,
            "sha256": sha256,
            "size_bytes": size_bytes,
            "created_at": utcnow(),
        }
        with self.transaction() as s:
            [record] = self._insert(VersionRow, [values], VersionRecord, session=s)
            row = s.get_one(VersionRow, record.id)
            if status is VersionStatus.INCUMBENT:
                _flip_incumbent(s, model_id, row.id, VersionStatus.BACKUP)
            else:
                row.status = status.value
            s.flush()
            return to_record(VersionRecord, row)

    def reserve_version_number(self, model_id: int) -> int:
        """Hand out the model's next version number, to this caller only.

        One ``UPDATE … RETURNING`` raises the model's counter (past any number its versions
        already use, e.g. written before schema 5), so two processes, or two threads, never get
        the same number and never write the same ``v<N>`` folder. A number whose version is
        never recorded (the process died) is simply not used again.

        Raises:
            NotFoundError: No such model.
        """
        highest = (
            select(func.coalesce(func.max(VersionRow.number), 0))
            .where(VersionRow.model_id == model_id)
            .scalar_subquery()
        )
        raised = case((ModelRow.last_version >= highest, ModelRow.last_version), else_=highest) + 1
        stmt = (
            update(ModelRow)
            .where(ModelRow.id == model_id)
            .values(last_version=raised)
            .returning(ModelRow.last_version)
        )
        with self.transaction() as s:
            number = s.execute(stmt).scalar_one_or_none()
        if number is None:
            raise NotFoundError(f"unknown model id {model_id}.")
        return int(number)

    def set_incumbent(
        self,
        model_id: int,
        version_id: int,
        *,
        old_status: VersionStatus = VersionStatus.BACKUP,
        replacing: int | None = None,
    ) -> None:
        """Move the incumbent pointer to ``version_id`` in one transaction.

        Args:
            replacing: The incumbent version id the move was decided against; the move is
                refused if another has become the incumbent since.

        Raises:
            IncumbentChangedError: ``replacing`` is no longer the incumbent; nothing changed.
        """
        with self.transaction() as s:
            _flip_incumbent(s, model_id, version_id, old_status, replacing)

    def set_version_status(self, version_id: int, status: VersionStatus) -> None:
        """Set a version's status (``PRUNED`` forgets its checkpoint path).

        Raises:
            StoreError: The version is the incumbent and ``status`` is not.
        """
        with self.transaction() as s:
            row = s.get_one(VersionRow, version_id)
            if (
                row.status == VersionStatus.INCUMBENT.value
                and status is not VersionStatus.INCUMBENT
            ):
                raise StoreError(
                    f"version id {version_id} is the incumbent; promote another version first."
                )
            row.status = status.value
            if status is VersionStatus.PRUNED:
                row.checkpoint_path = None

    def version_by_id(self, version_id: int) -> VersionRecord:
        """The version with this id.

        Raises:
            NotFoundError: No such version.
        """
        with self.read() as s:
            row = s.get(VersionRow, version_id)
            if row is None:
                raise NotFoundError(f"unknown version id {version_id}.")
            return to_record(VersionRecord, row)

    def incumbent_figures(
        self, metric: str, *, task: str | None = None
    ) -> list[tuple[int, str, int, float | None]]:
        """``(model id, name, incumbent version id, metric)`` of every model that has an
        incumbent (of ``task`` if given), by model id: one JSON field of each incumbent read in
        the database, not the versions (``None`` where it records no such number)."""
        value = VersionRow.metrics[metric].as_float()
        q = (
            select(ModelRow.id, ModelRow.name, VersionRow.id, value)
            .join(VersionRow, ModelRow.incumbent_version_id == VersionRow.id)
            .order_by(ModelRow.id)
        )
        if task is not None:
            q = q.where(ModelRow.task == task)
        with self.read() as s:
            return [
                (int(m), str(n), int(v), None if x is None else float(x))
                for m, n, v, x in s.execute(q)
            ]

    def incumbent_metric(self, name: str) -> list[float]:
        """Metric ``name`` of every incumbent that records it as a number, by model id (one
        JSON field of each incumbent, read in the database; the brain reads it every cycle)."""
        value = VersionRow.metrics[name].as_float()
        q = (
            select(value)
            .join(ModelRow, ModelRow.incumbent_version_id == VersionRow.id)
            .where(value.is_not(None))
            .order_by(ModelRow.id)
        )
        with self.read() as s:
            return [float(x) for x in s.scalars(q)]

    def versions_by_ids(self, version_ids: Iterable[int]) -> dict[int, VersionRecord]:
        """The versions with these ids (unknown ids left out), read in a few queries."""
        wanted = sorted(set(version_ids))
        out: dict[int, VersionRecord] = {}
        with self.read() as s:
            for i in range(0, len(wanted), 500):  # well under SQLite's bound-parameter limit
                # plain rows (every incumbent is read each cycle)
                q = select(*VersionRow.__table__.columns).where(
                    VersionRow.id.in_(wanted[i : i + 500])
                )
                out.update({r.id: to_record(VersionRecord, r) for r in s.execute(q)})
        return out

    def get_version(self, model: ModelRecord, number: int) -> VersionRecord:
        """Version ``number`` of ``model``.

        Raises:
            NotFoundError: No such version.
        """
        with self.read() as s:
            row = s.scalar(
                select(VersionRow).where(
                    VersionRow.model_id == model.id, VersionRow.number == number
                )
            )
            if row is None:
                numbers = s.scalars(
                    select(VersionRow.number).where(VersionRow.model_id == model.id)
                ).all()
                raise NotFoundError(
                    f"model {model.name!r} has no version {number}; versions: "
                    f"{', '.join(map(str, sorted(numbers))) or 'none'} "
                    f"(see `selfimprove history {model.name}`)."
                )
            return to_record(VersionRecord, row)

    def list_versions(
        self, model_id: int, *, statuses: Collection[VersionStatus] | None = None
    ) -> list[VersionRecord]:
        """The model's versions by number (only those in ``statuses`` if given: a model's
        history grows with every experiment, its backups and kept rejections do not)."""
        q = select(*VersionRow.__table__.columns).where(VersionRow.model_id == model_id)
        if statuses is not None:
            q = q.where(VersionRow.status.in_([st.value for st in statuses]))
        with self.read() as s:
            return [to_record(VersionRecord, r) for r in s.execute(q.order_by(VersionRow.number))]
