"""`Store`: the one place that talks SQL.

SQLite file in the home folder by default (WAL journal, busy timeout, foreign keys on); any
SQLAlchemy URL by ``SELFIMPROVE_DB``. Every write goes through :meth:`Store.transaction`, which
commits, rolls back on error, and re-raises database failures as :class:`StoreError`. Inside
:meth:`Store.batch` the transactions (and reads) of one thread share one session and commit once,
all or nothing: the engine's per-capability bookkeeping is one transaction a cycle, not one per
capability.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased, sessionmaker

from selfimprove.config import resolve_home
from selfimprove.errors import (
    ConfigError,
    NotFoundError,
    SchemaVersionError,
    SelfImproveError,
    StoreError,
)
from selfimprove.store._schema import (
    COLUMN_ADDITIONS,
    SCHEMA_VERSION,
    AuditRow,
    Base,
    CapabilityRow,
    CodeImprovementRow,
    CycleMetricsRow,
    EventRow,
    ExperimentRow,
    ImprovementHistoryRow,
    ImprovementMeasurementRow,
    MeasurementRow,
    MetaLearningRow,
    MetaRow,
    ModelRow,
    StateRow,
    VersionRow,
    WeaknessRow,
)
from selfimprove.store.records import (
    AuditRecord,
    CapabilityRecord,
    CodeImprovementRecord,
    CodeImprovementStatus,
    Decision,
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    HistoryRecord,
    ImprovementMeasurementRecord,
    MeasurementRecord,
    MeasurementSet,
    MetaLearningRecord,
    ModelRecord,
    VersionRecord,
    VersionStatus,
    WeaknessRecord,
    WeaknessStatus,
)

__all__ = ["Store", "clean_json", "utcnow"]

logger = logging.getLogger(__name__)

DB_FILENAME = "selfimprove.db"
_R = TypeVar("_R")

# Statements run once per capability every cycle, built once (building one costs more than
# running it on an index).
_LATEST_MEASUREMENT = (
    select(MeasurementRow)
    .where(
        MeasurementRow.capability_id == bindparam("capability_id"),
        MeasurementRow.split == bindparam("split"),
    )
    .order_by(MeasurementRow.id.desc())
    .limit(1)
)
_CAPABILITY_WEAKNESSES = (
    select(WeaknessRow)
    .where(
        WeaknessRow.status.in_(bindparam("statuses", expanding=True)),
        WeaknessRow.capability_id == bindparam("capability_id"),
    )
    .order_by(WeaknessRow.id)
)


def utcnow() -> datetime:
    """Naive UTC now (SQLite stores naive datetimes; every time in the store is UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def clean_json(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become ``None``, enums their value, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return clean_json(value.value)
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return clean_json(value.item())
    return value


def _to_record(cls: type[_R], row: Any) -> _R:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        values[f.name] = getattr(row, f.name)
    if cls is VersionRecord:
        values["status"] = VersionStatus(values["status"])
    elif cls is ExperimentRecord:
        values["status"] = ExperimentStatus(values["status"])
        values["decision"] = Decision(values["decision"]) if values["decision"] else None
    elif cls is WeaknessRecord:
        values["status"] = WeaknessStatus(values["status"])
    elif cls is CodeImprovementRecord:
        values["status"] = CodeImprovementStatus(values["status"])
    elif cls is MetaLearningRecord and values.get("times_validated") is None:
        values["times_validated"] = 0
    return cls(**values)


#: Ids bound in one ``IN (...)`` (SQLite allows 32766 parameters a statement, PostgreSQL 65535).
_IDS_PER_STATEMENT = 10_000
#: The fields of a new weakness (:meth:`Store.add_weakness`), and those it must have.
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


def _weakness_row(
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
) -> WeaknessRow:
    """A new open weakness's row."""
    return WeaknessRow(
        name=name,
        type=type,
        severity=severity,
        impact=float(impact),
        priority=float(priority),
        description=description,
        capability_id=capability_id,
        gap=clean_json(gap),
        status=WeaknessStatus.OPEN.value,
        source=source,
        evidence=clean_json(evidence or {}),
        resolution="",
        created_at=now,
        updated_at=now,
    )


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


def _normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for a bare ``postgresql://`` URL (psycopg2 is not a dependency)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"malformed database URL {url!r}; use e.g. sqlite:///path/to.db or "
            "postgresql://user:pass@host/dbname in SELFIMPROVE_DB."
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Store:
    """The ledger: models, versions, capabilities, measurements, experiments, events.

    Args:
        url: A SQLAlchemy URL. ``None``: ``$SELFIMPROVE_DB`` if set, else a SQLite file
            ``selfimprove.db`` in ``home``.
        home: Home folder for the default SQLite file (see :func:`resolve_home`).
        busy_timeout_s: How long a SQLite writer waits for a lock before failing.

    Raises:
        ConfigError: Malformed URL or unusable home folder.
        SchemaVersionError: The store was written by a newer schema.
        StoreError: The database cannot be opened.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        busy_timeout_s: float = 30.0,
    ) -> None:
        if url is None:
            url = os.environ.get("SELFIMPROVE_DB") or None
        if url is None:
            home_path = resolve_home(home)
            url = f"sqlite:///{home_path / DB_FILENAME}"
        url = _normalise_url(url)
        self._display_url = make_url(url).render_as_string(hide_password=True)
        self._engine = self._create_engine(url, busy_timeout_s)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._local = threading.local()  # the batch session of each thread (see `batch`)
        self._init_schema()

    # ------------------------------------------------------------------ plumbing
    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._display_url

    @property
    def engine(self) -> Engine:
        return self._engine

    def _create_engine(self, url: str, busy_timeout_s: float) -> Engine:
        try:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
                timeout_ms = int(busy_timeout_s * 1000)

                @event.listens_for(engine, "connect")
                def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                    cur = dbapi_conn.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute(f"PRAGMA busy_timeout={timeout_ms}")
                    cur.execute("PRAGMA foreign_keys=ON")
                    cur.close()

                return engine
            return create_engine(url, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(
                f"cannot use database URL {self._display_url!r}: {exc}; check SELFIMPROVE_DB "
                "(install the driver, e.g. pip install 'selfimprove[postgres]')."
            ) from None
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot open database {self._display_url}: {exc}") from None

    def _init_schema(self) -> None:
        try:
            with self._engine.begin() as conn:
                if inspect(conn).has_table(MetaRow.__tablename__):
                    row = conn.execute(
                        select(MetaRow.value).where(MetaRow.key == "schema_version")
                    ).scalar_one_or_none()
                    found = int(row) if row is not None else None
                    if found is not None and found > SCHEMA_VERSION:
                        raise SchemaVersionError(
                            f"the store at {self._display_url} was written by schema version "
                            f"{found}, newer than this selfimprove understands "
                            f"({SCHEMA_VERSION}); upgrade selfimprove or use another --home."
                        )
                else:
                    found = None
                Base.metadata.create_all(conn)
                if found is not None:  # indexes added to a table that already existed
                    for table in Base.metadata.sorted_tables:
                        for index in table.indexes:
                            index.create(conn, checkfirst=True)
                if found is not None and found < SCHEMA_VERSION:
                    self._add_columns(conn, found)
                if found is None:
                    conn.execute(
                        insert(MetaRow).values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                elif found < SCHEMA_VERSION:
                    conn.execute(
                        update(MetaRow)
                        .where(MetaRow.key == "schema_version")
                        .values(value=str(SCHEMA_VERSION))
                    )
        except SelfImproveError:
            self._engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreError(
                f"cannot open database {self._display_url}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}"
            ) from None

    @staticmethod
    def _add_columns(conn: Any, found: int) -> None:
        """Add the columns that versions after ``found`` put on tables an old store has.

        ``create_all`` creates missing tables (with every column) but never alters an existing
        table, so each column of :data:`COLUMN_ADDITIONS` newer than ``found`` is added with
        ``ALTER TABLE`` unless the table already has it (a table just created, or an upgrade
        that an earlier process began). Runs inside the schema transaction.
        """
        inspector = inspect(conn)
        for version, table, column, ddl in COLUMN_ADDITIONS:
            if version <= found:
                continue
            existing = {c["name"] for c in inspector.get_columns(table)}
            if column in existing:
                continue
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            logger.info("store upgrade: added column %s.%s (schema %d)", table, column, version)

    def schema_version(self) -> int:
        """The schema version recorded in the store."""
        with self.read() as s:
            return int(s.get_one(MetaRow, "schema_version").value)

    def _batch_session(self) -> Session | None:
        return getattr(self._local, "session", None)

    @property
    def in_batch(self) -> bool:
        """Whether this thread is inside :meth:`batch` (its transactions are part of it)."""
        return self._batch_session() is not None

    @contextlib.contextmanager
    def batch(self) -> Iterator[Session]:
        """One transaction for many writes of this thread: all or nothing.

        Every :meth:`transaction` and :meth:`read` of this thread inside the block uses the
        batch's session (reads see the batch's own writes); the block commits once at its end.
        When anything inside failed, even if the caller caught the error, nothing of the batch
        is kept: a failed write cannot be undone alone without a savepoint. Other threads are
        not affected. A batch inside a batch is part of the outer one.

        Raises:
            StoreError: The commit failed, or a write inside the batch failed (rolled back).
        """
        outer = self._batch_session()
        if outer is not None:
            yield outer
            return
        session = self._sessions()
        self._local.session, self._local.failed = session, None
        try:
            yield session
            failed = self._local.failed
            if failed is not None:
                raise StoreError(
                    f"a write inside a batch failed ({failed}); the whole batch was rolled back"
                )
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(
                f"database write failed and was rolled back ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]})"
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            self._local.session = self._local.failed = None
            session.close()

    @contextlib.contextmanager
    def _in_batch(self, session: Session, *, write: bool) -> Iterator[Session]:
        """A transaction or read that is part of this thread's batch (flushed, not committed)."""
        try:
            yield session
            if write:
                session.flush()
        except SQLAlchemyError as exc:
            self._local.failed = exc.__class__.__name__
            raise StoreError(
                f"database {'write' if write else 'read'} failed inside a batch "
                f"({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
            ) from exc
        except BaseException as exc:
            if write:
                self._local.failed = exc.__class__.__name__
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error.

        Database errors are re-raised as :class:`StoreError`; the package's own errors pass
        through unchanged (after the rollback). Inside :meth:`batch` it is part of the batch.
        """
        batch = self._batch_session()
        if batch is not None:
            with self._in_batch(batch, write=True) as session:
                yield session
            return
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(
                f"database write failed and was rolled back ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]})"
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (never commits); inside :meth:`batch`, the batch's session."""
        batch = self._batch_session()
        if batch is not None:
            with self._in_batch(batch, write=False) as session:
                yield session
            return
        session = self._sessions()
        try:
            yield session
        except SQLAlchemyError as exc:
            raise StoreError(
                f"database read failed ({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
            ) from exc
        finally:
            session.rollback()
            session.close()

    def close(self) -> None:
        """Release every connection."""
        self._engine.dispose()

    # ------------------------------------------------------------------ models
    def add_model(self, name: str, task: str, family: str, description: str = "") -> ModelRecord:
        """Insert a model (no versions yet)."""
        with self.transaction() as s:
            if s.scalar(select(ModelRow).where(ModelRow.name == name)) is not None:
                raise ConfigError(
                    f"a model named {name!r} is already registered; pick another name."
                )
            row = ModelRow(
                name=name, task=task, family=family, description=description, created_at=utcnow()
            )
            s.add(row)
            s.flush()
            return _to_record(ModelRecord, row)

    def find_model(self, name: str) -> ModelRecord | None:
        """The model called ``name``, or ``None``."""
        with self.read() as s:
            row = s.scalar(select(ModelRow).where(ModelRow.name == name))
            return _to_record(ModelRecord, row) if row is not None else None

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
        with self.read() as s:
            row = s.get(ModelRow, model_id)
            if row is None:
                raise NotFoundError(f"unknown model id {model_id}.")
            return _to_record(ModelRecord, row)

    def list_models(self) -> list[ModelRecord]:
        with self.read() as s:
            rows = s.scalars(select(ModelRow).order_by(ModelRow.id))
            return [_to_record(ModelRecord, r) for r in rows]

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
            row = s.scalar(select(CapabilityRow).where(CapabilityRow.name == name))
            if row is None:
                row = CapabilityRow(
                    name=name,
                    type=type,
                    description=description,
                    direction=direction,
                    baseline=baseline,
                    target=target,
                    unit=unit,
                    model_id=model_id,
                    objective=objective,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
            else:
                row.type, row.description, row.direction = type, description, direction
                row.target, row.unit, row.updated_at = target, unit, now
                if row.baseline is None:
                    row.baseline = baseline
                if model_id is not None:
                    row.model_id, row.objective = model_id, objective
            s.flush()
            return _to_record(CapabilityRecord, row)

    def set_capability_baseline(self, capability_id: int, baseline: float) -> None:
        with self.transaction() as s:
            row = s.get_one(CapabilityRow, capability_id)
            row.baseline = baseline

    def get_capability(self, name: str) -> CapabilityRecord:
        with self.read() as s:
            row = s.scalar(select(CapabilityRow).where(CapabilityRow.name == name))
            if row is None:
                raise NotFoundError(f"unknown capability {name!r}.")
            return _to_record(CapabilityRecord, row)

    def list_capabilities(self, model_id: int | None = None) -> list[CapabilityRecord]:
        with self.read() as s:
            q = select(CapabilityRow).order_by(CapabilityRow.id)
            if model_id is not None:
                q = q.where(CapabilityRow.model_id == model_id)
            return [_to_record(CapabilityRecord, r) for r in s.scalars(q)]

    def list_capabilities_with_target(self) -> list[CapabilityRecord]:
        """The capabilities that have a target (those a weakness can be judged on), by id.

        Read as plain rows, not ORM objects: the engine reads them every cycle, and building
        thousands of ORM objects costs ten times the query.
        """
        q = (
            select(*CapabilityRow.__table__.columns)
            .where(CapabilityRow.target.is_not(None))
            .order_by(CapabilityRow.id)
        )
        with self.read() as s:
            return [_to_record(CapabilityRecord, r) for r in s.execute(q)]

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
        now = utcnow()
        with self.transaction() as s:
            row = VersionRow(
                model_id=model_id,
                number=number,
                parent_id=parent_id,
                status=VersionStatus.CANDIDATE.value,
                strategy=strategy,
                origin=origin,
                params=clean_json(params),
                metrics=clean_json(metrics),
                checkpoint_path=checkpoint_path,
                manifest_path=manifest_path,
                sha256=sha256,
                size_bytes=size_bytes,
                created_at=now,
            )
            s.add(row)
            s.flush()
            if status is VersionStatus.INCUMBENT:
                self._flip_incumbent(s, model_id, row.id, VersionStatus.BACKUP)
            else:
                row.status = status.value
            s.flush()
            return _to_record(VersionRecord, row)

    def next_version_number(self, model_id: int) -> int:
        with self.read() as s:
            rows = s.scalars(select(VersionRow.number).where(VersionRow.model_id == model_id))
            return max(rows, default=0) + 1

    @staticmethod
    def _flip_incumbent(
        s: Session, model_id: int, version_id: int, old_status: VersionStatus
    ) -> None:
        model = s.get_one(ModelRow, model_id)
        now = utcnow()
        if model.incumbent_version_id is not None and model.incumbent_version_id != version_id:
            old = s.get_one(VersionRow, model.incumbent_version_id)
            old.status, old.retired_at = old_status.value, now
        new = s.get_one(VersionRow, version_id)
        if new.model_id != model_id:
            raise NotFoundError(f"version id {version_id} does not belong to model {model.name!r}.")
        new.status, new.retired_at = VersionStatus.INCUMBENT.value, None
        model.incumbent_version_id = version_id

    def set_incumbent(
        self, model_id: int, version_id: int, *, old_status: VersionStatus = VersionStatus.BACKUP
    ) -> None:
        """Move the incumbent pointer to ``version_id`` in one transaction."""
        with self.transaction() as s:
            self._flip_incumbent(s, model_id, version_id, old_status)

    def set_version_status(self, version_id: int, status: VersionStatus) -> None:
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
        with self.read() as s:
            row = s.get(VersionRow, version_id)
            if row is None:
                raise NotFoundError(f"unknown version id {version_id}.")
            return _to_record(VersionRecord, row)

    def versions_by_ids(self, version_ids: Iterable[int]) -> dict[int, VersionRecord]:
        """The versions with these ids (unknown ids left out), read in a few queries."""
        wanted = sorted(set(version_ids))
        out: dict[int, VersionRecord] = {}
        with self.read() as s:
            for i in range(0, len(wanted), 500):  # well under SQLite's bound-parameter limit
                q = select(VersionRow).where(VersionRow.id.in_(wanted[i : i + 500]))
                out.update({r.id: _to_record(VersionRecord, r) for r in s.scalars(q)})
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
            return _to_record(VersionRecord, row)

    def list_versions(self, model_id: int) -> list[VersionRecord]:
        with self.read() as s:
            rows = s.scalars(
                select(VersionRow)
                .where(VersionRow.model_id == model_id)
                .order_by(VersionRow.number)
            )
            return [_to_record(VersionRecord, r) for r in rows]

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
        with self.transaction() as s:
            for split, value in values.items():
                s.add(
                    MeasurementRow(
                        capability_id=capability_id,
                        version_id=version_id,
                        split=split,
                        value=float(value) if math.isfinite(value) else math.nan,
                        context=clean_json(context or {}),
                        measured_at=now,
                    )
                )

    def add_measurement_sets(self, sets: Sequence[MeasurementSet]) -> None:
        """Record many :class:`MeasurementSet` in one transaction and one statement (the same
        rows as :meth:`add_measurements` for each, in order)."""
        now = utcnow()
        rows = [
            {
                "capability_id": m.capability_id,
                "version_id": m.version_id,
                "split": split,
                "value": float(value) if math.isfinite(value) else math.nan,
                "context": clean_json(dict(m.context)),
                "measured_at": m.measured_at or now,
            }
            for m in sets
            for split, value in m.values.items()
        ]
        if not rows:
            return
        with self.transaction() as s:
            s.execute(insert(MeasurementRow), rows)

    def list_measurements(
        self, capability_id: int | None = None, *, split: str | None = None
    ) -> list[MeasurementRecord]:
        with self.read() as s:
            q = select(MeasurementRow).order_by(MeasurementRow.id)
            if capability_id is not None:
                q = q.where(MeasurementRow.capability_id == capability_id)
            if split is not None:
                q = q.where(MeasurementRow.split == split)
            return [_to_record(MeasurementRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ experiments
    def add_experiment(
        self,
        *,
        model_id: int | None,
        strategy: str,
        objective: str | None = None,
        capability_id: int | None = None,
        params: dict[str, Any] | None = None,
        hypothesis: str = "",
        cycle: int | None = None,
        seed: int | None = None,
        incumbent_version_id: int | None = None,
        status: ExperimentStatus = ExperimentStatus.PLANNED,
    ) -> ExperimentRecord:
        now = utcnow()
        with self.transaction() as s:
            row = ExperimentRow(
                model_id=model_id,
                capability_id=capability_id,
                strategy=strategy,
                objective=objective,
                params=clean_json(params or {}),
                hypothesis=hypothesis,
                cycle=cycle,
                seed=seed,
                status=status.value,
                decision=None,
                reason="",
                statistics={},
                incumbent_version_id=incumbent_version_id,
                candidate_version_id=None,
                compute={},
                durations={},
                created_at=now,
                started_at=now if status is ExperimentStatus.RUNNING else None,
            )
            s.add(row)
            s.flush()
            return _to_record(ExperimentRecord, row)

    def update_experiment(self, experiment_id: int, **changes: Any) -> ExperimentRecord:
        """Change fields of an experiment (enums and NaN are converted for storage).

        Finishing states set ``finished_at``; ``RUNNING`` sets ``started_at``.
        """
        with self.transaction() as s:
            row = s.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"unknown experiment id {experiment_id}.")
            for key, value in changes.items():
                if not hasattr(ExperimentRow, key):
                    raise StoreError(f"experiments have no field {key!r}.")
                setattr(row, key, clean_json(value))
            status = changes.get("status")
            if status is not None:
                status = ExperimentStatus(status)
                if status is ExperimentStatus.RUNNING and row.started_at is None:
                    row.started_at = utcnow()
                if status.is_finished():
                    row.finished_at = utcnow()
            s.flush()
            return _to_record(ExperimentRecord, row)

    def get_experiment(self, experiment_id: int) -> ExperimentRecord:
        with self.read() as s:
            row = s.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"unknown experiment id {experiment_id}.")
            return _to_record(ExperimentRecord, row)

    def list_experiments(
        self,
        *,
        model_id: int | None = None,
        status: ExperimentStatus | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[ExperimentRecord]:
        with self.read() as s:
            order = ExperimentRow.id.desc() if newest_first else ExperimentRow.id
            q = select(ExperimentRow).order_by(order)
            if model_id is not None:
                q = q.where(ExperimentRow.model_id == model_id)
            if status is not None:
                q = q.where(ExperimentRow.status == status.value)
            if limit is not None:
                q = q.limit(limit)
            return [_to_record(ExperimentRecord, r) for r in s.scalars(q)]

    def experiment_outline(self) -> list[tuple[int | None, int | None, str, str, str | None]]:
        """Every experiment as ``(model_id, cycle, strategy, status, decision)``, oldest first:
        the columns planning needs, without decoding each experiment's statistics (reading whole
        records made every cycle slower as the ledger grew)."""
        with self.read() as s:
            q = select(
                ExperimentRow.model_id,
                ExperimentRow.cycle,
                ExperimentRow.strategy,
                ExperimentRow.status,
                ExperimentRow.decision,
            ).order_by(ExperimentRow.id)
            return [(r[0], r[1], r[2], r[3], r[4]) for r in s.execute(q)]

    def max_cycle(self) -> int:
        """The highest cycle number recorded (0 when none)."""
        with self.read() as s:
            value = s.scalar(select(func.max(ExperimentRow.cycle)))
            return int(value or 0)

    def mark_stale_experiments(self) -> list[ExperimentRecord]:
        """Mark experiments left ``running`` by a crashed process as ``stale``.

        Planned experiments (the engine's, not started yet) are left alone: nothing cut them
        short.
        """
        with self.transaction() as s:
            rows = list(
                s.scalars(
                    select(ExperimentRow).where(
                        ExperimentRow.status == ExperimentStatus.RUNNING.value
                    )
                )
            )
            now = utcnow()
            for row in rows:
                row.status = ExperimentStatus.STALE.value
                row.reason = "cut short: the process stopped before the experiment finished"
                row.finished_at = now
            s.flush()
            return [_to_record(ExperimentRecord, r) for r in rows]

    # ------------------------------------------------------------------ events
    def add_event(
        self,
        kind: str,
        message: str = "",
        *,
        model_id: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> EventRecord:
        with self.transaction() as s:
            row = EventRow(
                kind=kind,
                model_id=model_id,
                message=message,
                payload=clean_json(payload or {}),
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _to_record(EventRecord, row)

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
            unknown = set(e) - {"kind", "message", "model_id", "payload"}
            if unknown or not e.get("kind"):
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
        if not rows:
            return
        with self.transaction() as s:
            s.execute(insert(EventRow), rows)

    def list_events(
        self, *, kind: str | None = None, model_id: int | None = None, limit: int | None = None
    ) -> list[EventRecord]:
        with self.read() as s:
            q = select(EventRow).order_by(EventRow.id.desc())
            if kind is not None:
                q = q.where(EventRow.kind == kind)
            if model_id is not None:
                q = q.where(EventRow.model_id == model_id)
            if limit is not None:
                q = q.limit(limit)
            return [_to_record(EventRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ component state
    def save_state(self, key: str, value: dict[str, Any]) -> None:
        """Store a component's JSON state under ``key`` (replacing the previous one)."""
        with self.transaction() as s:
            row = s.get(StateRow, key)
            if row is None:
                s.add(StateRow(key=key, value=clean_json(value), updated_at=utcnow()))
            else:
                row.value, row.updated_at = clean_json(value), utcnow()

    def load_state(self, key: str) -> dict[str, Any] | None:
        """The JSON state stored under ``key``, or ``None``."""
        with self.read() as s:
            row = s.get(StateRow, key)
            return dict(row.value) if row is not None else None

    # ------------------------------------------------------------------ cycle metrics
    def add_cycle_metrics(self, **values: Any) -> None:
        """Record one ``SelfImprovementMetrics`` row (see the schema for the fields)."""
        with self.transaction() as s:
            s.add(CycleMetricsRow(**clean_json(values)))

    def list_cycle_metrics(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Cycle metrics, oldest first (the newest ``limit`` when given)."""
        with self.read() as s:
            q = select(CycleMetricsRow).order_by(CycleMetricsRow.id.desc())
            if limit is not None:
                q = q.limit(limit)
            rows = list(s.scalars(q))
            cols = [c.name for c in CycleMetricsRow.__table__.columns if c.name != "id"]
            return [{c: getattr(r, c) for c in cols} for r in reversed(rows)]

    # ------------------------------------------------------------------ meta-learnings
    def upsert_meta_learning(
        self,
        kind: str,
        subject: str,
        *,
        statement: str,
        count: int,
        successes: int,
        confidence: float,
        evidence: dict[str, Any] | None = None,
    ) -> MetaLearningRecord:
        """Create or refresh the meta-learning for (``kind``, ``subject``)."""
        now = utcnow()
        with self.transaction() as s:
            row = s.scalar(
                select(MetaLearningRow).where(
                    MetaLearningRow.kind == kind, MetaLearningRow.subject == subject
                )
            )
            if row is None:
                row = MetaLearningRow(kind=kind, subject=subject, created_at=now)
                s.add(row)
            row.statement, row.count, row.successes = statement, count, successes
            row.confidence, row.evidence, row.updated_at = (
                float(confidence),
                clean_json(evidence or {}),
                now,
            )
            s.flush()
            return _to_record(MetaLearningRecord, row)

    def list_meta_learnings(self, kind: str | None = None) -> list[MetaLearningRecord]:
        with self.read() as s:
            q = select(MetaLearningRow).order_by(MetaLearningRow.id)
            if kind is not None:
                q = q.where(MetaLearningRow.kind == kind)
            return [_to_record(MetaLearningRecord, r) for r in s.scalars(q)]

    def record_meta_learning(
        self,
        kind: str,
        subject: str,
        *,
        statement: str,
        count: int,
        successes: int,
        confidence: float,
        evidence: dict[str, Any] | None = None,
        validated: bool = False,
    ) -> MetaLearningRecord:
        """Create or refresh a meta-learning, counting a validation when ``validated``.

        Like :meth:`upsert_meta_learning`, plus ``times_validated``: it grows by one when the
        row already existed and the caller says the new observation agrees with it.
        """
        now = utcnow()
        with self.transaction() as s:
            row = s.scalar(
                select(MetaLearningRow).where(
                    MetaLearningRow.kind == kind, MetaLearningRow.subject == subject
                )
            )
            if row is None:
                row = MetaLearningRow(kind=kind, subject=subject, created_at=now, times_validated=0)
                s.add(row)
            elif validated:
                row.times_validated = (row.times_validated or 0) + 1
            row.statement, row.count, row.successes = statement, count, successes
            row.confidence, row.evidence, row.updated_at = (
                float(confidence),
                clean_json(evidence or {}),
                now,
            )
            s.flush()
            return _to_record(MetaLearningRecord, row)

    def find_meta_learning(self, kind: str, subject: str) -> MetaLearningRecord | None:
        """The meta-learning for (``kind``, ``subject``), or ``None``."""
        with self.read() as s:
            row = s.scalar(
                select(MetaLearningRow).where(
                    MetaLearningRow.kind == kind, MetaLearningRow.subject == subject
                )
            )
            return _to_record(MetaLearningRecord, row) if row is not None else None

    # ------------------------------------------------------------------ engine: measurements
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
                    return _to_record(MeasurementRecord, row)
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
        self, splits: tuple[str, ...] = ("validation", "global")
    ) -> dict[int, MeasurementRecord]:
        """:meth:`latest_measurement` of every capability that has one, by capability id.

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
        # Plain rows, not ORM objects: building 3000 of those costs ten times the query.
        q = select(*MeasurementRow.__table__.columns).where(MeasurementRow.id.in_(ids))
        with self.read() as s:
            return {r.capability_id: _to_record(MeasurementRecord, r) for r in s.execute(q)}

    def count_measurements_by_capability(self) -> dict[int, int]:
        """:meth:`count_measurements` of every capability that has one, in one statement."""
        with self.read() as s:
            q = select(MeasurementRow.capability_id, func.count(MeasurementRow.id)).group_by(
                MeasurementRow.capability_id
            )
            return {int(cap_id): int(n) for cap_id, n in s.execute(q)}

    # ------------------------------------------------------------------ engine: experiments
    def add_experiments(self, specs: list[dict[str, Any]]) -> list[ExperimentRecord]:
        """Insert several planned experiments in one transaction.

        Each spec holds :class:`ExperimentRow` fields (``strategy`` is required; ``model_id``,
        ``capability_id``, ``objective``, ``params``, ``hypothesis``, ``weakness_id``,
        ``expected_improvement`` are optional).
        """
        now = utcnow()
        with self.transaction() as s:
            rows = []
            for spec in specs:
                unknown = set(spec) - set(ExperimentRow.__table__.columns.keys())
                if unknown:
                    raise StoreError(f"experiments have no fields {sorted(unknown)}.")
                row = ExperimentRow(
                    model_id=spec.get("model_id"),
                    capability_id=spec.get("capability_id"),
                    strategy=spec["strategy"],
                    objective=spec.get("objective"),
                    params=clean_json(spec.get("params") or {}),
                    hypothesis=spec.get("hypothesis", ""),
                    cycle=spec.get("cycle"),
                    seed=spec.get("seed"),
                    status=ExperimentStatus.PLANNED.value,
                    decision=None,
                    reason="",
                    statistics={},
                    incumbent_version_id=None,
                    candidate_version_id=None,
                    compute={},
                    durations={},
                    created_at=now,
                    weakness_id=spec.get("weakness_id"),
                    expected_improvement=clean_json(spec.get("expected_improvement")),
                )
                s.add(row)
                rows.append(row)
            s.flush()
            return [_to_record(ExperimentRecord, r) for r in rows]

    def list_weakness_experiments(self, weakness_id: int) -> list[ExperimentRecord]:
        """The experiments planned for one weakness, oldest first."""
        with self.read() as s:
            q = (
                select(ExperimentRow)
                .where(ExperimentRow.weakness_id == weakness_id)
                .order_by(ExperimentRow.id)
            )
            return [_to_record(ExperimentRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ engine: weaknesses
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
        row = _weakness_row(
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
        with self.transaction() as s:
            s.add(row)
            s.flush()
            return _to_record(WeaknessRecord, row)

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
        if not specs:
            return []
        now = utcnow()
        rows = []
        for spec in specs:
            if not _WEAKNESS_REQUIRED.issubset(spec) or not _WEAKNESS_FIELDS.issuperset(spec):
                raise StoreError(
                    f"a weakness needs {sorted(_WEAKNESS_REQUIRED)} and may have "
                    f"{sorted(_WEAKNESS_FIELDS - _WEAKNESS_REQUIRED)}; got {sorted(spec)}."
                )
            rows.append(_weakness_row(now=now, **spec))
        with self.transaction() as s:
            s.add_all(rows)
            s.flush()
            return [_to_record(WeaknessRecord, r) for r in rows]

    def update_weakness(self, weakness_id: int, **changes: Any) -> WeaknessRecord:
        """Change fields of a weakness; a status change is checked against the lifecycle.

        Raises:
            NotFoundError: No such weakness.
            ConfigError: The lifecycle does not allow the status change.
        """
        with self.transaction() as s:
            row = s.get(WeaknessRow, weakness_id)
            if row is None:
                raise NotFoundError(
                    f"unknown weakness id {weakness_id}; see `selfimprove engine weaknesses --all`."
                )
            _change_weakness(row, changes, utcnow())
            s.flush()
            return _to_record(WeaknessRecord, row)

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
                raise NotFoundError(
                    f"unknown weakness ids {missing}; see `selfimprove engine weaknesses --all`."
                )
            for weakness_id, fields in changes.items():
                _change_weakness(rows[weakness_id], fields, now)
            s.flush()
            return {i: _to_record(WeaknessRecord, rows[i]) for i in changes}

    def get_weakness(self, weakness_id: int) -> WeaknessRecord:
        """The weakness with this id.

        Raises:
            NotFoundError: No such weakness.
        """
        with self.read() as s:
            row = s.get(WeaknessRow, weakness_id)
            if row is None:
                raise NotFoundError(
                    f"unknown weakness id {weakness_id}; see `selfimprove engine weaknesses --all`."
                )
            return _to_record(WeaknessRecord, row)

    def list_weaknesses(
        self,
        *,
        statuses: tuple[WeaknessStatus, ...] | None = None,
        capability_id: int | None = None,
    ) -> list[WeaknessRecord]:
        """Weaknesses, oldest first (only those in ``statuses`` / of a capability if given)."""
        with self.read() as s:
            if statuses is not None and capability_id is not None:  # the engine's, per capability
                params = {"statuses": [st.value for st in statuses], "capability_id": capability_id}
                return [
                    _to_record(WeaknessRecord, r) for r in s.scalars(_CAPABILITY_WEAKNESSES, params)
                ]
            q = select(WeaknessRow).order_by(WeaknessRow.id)
            if statuses is not None:
                q = q.where(WeaknessRow.status.in_([st.value for st in statuses]))
            if capability_id is not None:
                q = q.where(WeaknessRow.capability_id == capability_id)
            return [_to_record(WeaknessRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ engine: code changes
    def add_code_improvement(self, **fields: Any) -> CodeImprovementRecord:
        """Insert a pending code improvement (fields of :class:`CodeImprovementRecord`)."""
        now = utcnow()
        with self.transaction() as s:
            row = CodeImprovementRow(
                status=CodeImprovementStatus.PENDING.value,
                reason="",
                check_before={},
                check_after={},
                performance={},
                decided_by=None,
                created_at=now,
                **{k: clean_json(v) if not isinstance(v, bytes) else v for k, v in fields.items()},
            )
            s.add(row)
            s.flush()
            return _to_record(CodeImprovementRecord, row)

    def update_code_improvement(self, improvement_id: int, **changes: Any) -> CodeImprovementRecord:
        """Change fields of a code improvement (enums and NaN converted for storage)."""
        with self.transaction() as s:
            row = s.get(CodeImprovementRow, improvement_id)
            if row is None:
                raise NotFoundError(
                    f"unknown code improvement id {improvement_id}; "
                    "see `selfimprove engine improvements`."
                )
            for key, value in changes.items():
                if key not in CodeImprovementRow.__table__.columns or key == "id":
                    raise StoreError(f"code improvements have no field {key!r}.")
                setattr(row, key, value if isinstance(value, bytes) else clean_json(value))
            s.flush()
            return _to_record(CodeImprovementRecord, row)

    def get_code_improvement(self, improvement_id: int) -> CodeImprovementRecord:
        """The code improvement with this id.

        Raises:
            NotFoundError: No such code improvement.
        """
        with self.read() as s:
            row = s.get(CodeImprovementRow, improvement_id)
            if row is None:
                raise NotFoundError(
                    f"unknown code improvement id {improvement_id}; "
                    "see `selfimprove engine improvements`."
                )
            return _to_record(CodeImprovementRecord, row)

    def list_code_improvements(
        self, status: CodeImprovementStatus | None = None
    ) -> list[CodeImprovementRecord]:
        """Code improvements, oldest first (only those in ``status`` if given)."""
        with self.read() as s:
            q = select(CodeImprovementRow).order_by(CodeImprovementRow.id)
            if status is not None:
                q = q.where(CodeImprovementRow.status == status.value)
            return [_to_record(CodeImprovementRecord, r) for r in s.scalars(q)]

    def add_audit(
        self,
        action: str,
        actor: str,
        *,
        improvement_id: int | None = None,
        file_path: str = "",
        sha256_before: str | None = None,
        sha256_after: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one entry to the audit trail."""
        with self.transaction() as s:
            row = AuditRow(
                action=action,
                actor=actor,
                improvement_id=improvement_id,
                file_path=file_path,
                sha256_before=sha256_before,
                sha256_after=sha256_after,
                details=clean_json(details or {}),
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _to_record(AuditRecord, row)

    def list_audit(
        self, improvement_id: int | None = None, *, limit: int | None = None
    ) -> list[AuditRecord]:
        """Audit entries, oldest first (of one improvement if given; the newest ``limit``)."""
        with self.read() as s:
            q = select(AuditRow).order_by(AuditRow.id.desc())
            if improvement_id is not None:
                q = q.where(AuditRow.improvement_id == improvement_id)
            if limit is not None:
                q = q.limit(limit)
            return [_to_record(AuditRecord, r) for r in reversed(list(s.scalars(q)))]

    # ------------------------------------------------------------------ engine: history
    def add_history_entry(
        self,
        version: str,
        summary: str,
        *,
        improvements: list[Any],
        performance_delta: float | None,
        changes: list[Any],
    ) -> HistoryRecord:
        """Append one version to the improvement changelog."""
        with self.transaction() as s:
            row = ImprovementHistoryRow(
                version=version,
                summary=summary,
                improvements=clean_json(improvements),
                performance_delta=clean_json(performance_delta),
                changes=clean_json(changes),
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _to_record(HistoryRecord, row)

    def list_history_entries(self, limit: int | None = None) -> list[HistoryRecord]:
        """Changelog entries, newest first."""
        with self.read() as s:
            q = select(ImprovementHistoryRow).order_by(ImprovementHistoryRow.id.desc())
            if limit is not None:
                q = q.limit(limit)
            return [_to_record(HistoryRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ engine: comparisons
    def add_improvement_measurement(self, **fields: Any) -> ImprovementMeasurementRecord:
        """Record one measured before/after comparison (fields of the record, no id)."""
        with self.transaction() as s:
            row = ImprovementMeasurementRow(
                measured_at=utcnow(), **{k: clean_json(v) for k, v in fields.items()}
            )
            s.add(row)
            s.flush()
            return _to_record(ImprovementMeasurementRecord, row)

    def list_improvement_measurements(
        self, metric_name: str | None = None
    ) -> list[ImprovementMeasurementRecord]:
        """Measured comparisons, oldest first (of one metric if named)."""
        with self.read() as s:
            q = select(ImprovementMeasurementRow).order_by(ImprovementMeasurementRow.id)
            if metric_name is not None:
                q = q.where(ImprovementMeasurementRow.metric_name == metric_name)
            return [_to_record(ImprovementMeasurementRecord, r) for r in s.scalars(q)]
