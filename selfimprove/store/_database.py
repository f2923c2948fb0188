"""Database plumbing: the engine, the SQLite pragmas, the one session helper, the one insert.

SQLite file in the home folder by default (WAL journal, busy timeout, foreign keys on); any
SQLAlchemy URL by ``SELFIMPROVE_DB`` (a bare ``postgresql://`` gets the psycopg 3 driver).
Every write goes through :meth:`Database.transaction`, which commits, rolls back on error, and
re-raises database failures as :class:`StoreError`. Inside :meth:`Database.batch` the
transactions (and reads) of one thread share one session and commit once, all or nothing: the
engine's per-capability bookkeeping is one transaction a cycle, not one per capability. Every
insert of every repository goes through :meth:`Database._insert`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from selfimprove.config import resolve_home
from selfimprove.errors import ConfigError, SelfImproveError, StoreError
from selfimprove.store._convert import to_record
from selfimprove.store._schema import Base, MetaRow
from selfimprove.store.migrations import WRITE_OPTION, ensure_schema

__all__ = ["DB_FILENAME", "Database", "normalise_url"]

DB_FILENAME = "selfimprove.db"
_R = TypeVar("_R")


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for a bare ``postgresql://`` URL (psycopg2 is not a dependency).

    Raises:
        ConfigError: A malformed URL.
    """
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


def _create_engine(url: str, display_url: str, busy_timeout_s: float) -> Engine:
    """An engine for ``url``; SQLite connections get WAL, the busy timeout and foreign keys.

    SQLite transactions are real ones: Python's sqlite3 driver begins a transaction only at the
    first write, so the reads before it saw whatever other processes committed meanwhile (two
    processes each read one incumbent and each promoted over it: two incumbents). The driver's
    own ``BEGIN`` is turned off and every transaction begins itself: ``BEGIN IMMEDIATE`` for
    one that writes (it takes the write lock first, waiting up to the busy timeout, so its reads
    and writes are one unit and writers queue) and ``BEGIN`` for one that only reads (a
    consistent snapshot under WAL, never blocking a writer). SQLAlchemy's documented recipe.

    Raises:
        ConfigError: No such dialect or driver.
        StoreError: The SQLite file's folder cannot be made.
    """
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        timeout_ms = int(busy_timeout_s * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # no implicit BEGIN: see _begin
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={timeout_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            writes = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

        return engine
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(
            f"cannot use database URL {display_url!r}: {exc}; check SELFIMPROVE_DB "
            "(install the driver, e.g. pip install 'selfimprove[postgres]')."
        ) from None
    except (OSError, SQLAlchemyError) as exc:
        raise StoreError(f"cannot open database {display_url}: {exc}") from None


def _failure(exc: SQLAlchemyError) -> str:
    """``Name: first line`` of a database error (its SQL and parameters left out)."""
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"


class Database:
    """An open database at the schema head, and the sessions every repository works through.

    Args:
        url: A SQLAlchemy URL. ``None``: ``$SELFIMPROVE_DB`` if set, else a SQLite file
            ``selfimprove.db`` in ``home``.
        home: Home folder for the default SQLite file (see :func:`resolve_home`).
        busy_timeout_s: How long a SQLite writer waits for a lock before failing.

    Raises:
        ConfigError: Malformed URL or unusable home folder.
        SchemaVersionError: The store was written by a newer schema.
        StoreError: The database cannot be opened or upgraded.
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
        url = normalise_url(url)
        self._display_url = make_url(url).render_as_string(hide_password=True)
        self._engine = _create_engine(url, self._display_url, busy_timeout_s)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self._engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
        self._local = threading.local()  # the batch session of each thread (see `batch`)
        try:
            ensure_schema(self._engine, self._display_url)
        except SelfImproveError:
            self._engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreError(f"cannot open database {self._display_url}: {_failure(exc)}") from None

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._display_url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (one connection pool per store)."""
        return self._engine

    def schema_version(self) -> int:
        """The schema version recorded in the store (the ``meta`` table's ``schema_version``)."""
        with self.read() as s:
            return int(s.get_one(MetaRow, "schema_version").value)

    def close(self) -> None:
        """Release every connection."""
        self._engine.dispose()

    # ------------------------------------------------------------------ sessions
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
        session = self._write_sessions()
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
                f"database write failed and was rolled back ({_failure(exc)})"
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
                f"database {'write' if write else 'read'} failed inside a batch ({_failure(exc)})"
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
        session = self._write_sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(
                f"database write failed and was rolled back ({_failure(exc)})"
            ) from exc
        except OverflowError as exc:  # a number the database cannot hold (sqlite3 raises it)
            session.rollback()
            raise StoreError(
                f"database write refused and rolled back: a number is too large to store ({exc})"
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
            raise StoreError(f"database read failed ({_failure(exc)})") from exc
        except OverflowError as exc:  # a number the database cannot hold (sqlite3 raises it)
            raise StoreError(
                f"database read refused: a number is too large to look up ({exc})"
            ) from exc
        finally:
            session.rollback()
            session.close()

    # ------------------------------------------------------------------ get or insert
    @staticmethod
    def _serialise(session: Session, name: str) -> None:
        """Make the writers of ``name`` (a row found by key, then updated or inserted) take
        turns until this transaction ends, so two processes never both insert it.

        SQLite: nothing to do, a write transaction holds the database's write lock from its
        start. PostgreSQL: a transaction-scoped advisory lock on a 63-bit hash of ``name``
        (stable across processes).
        """
        if session.get_bind().dialect.name != "postgresql":
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    # ------------------------------------------------------------------ the one insert
    def _insert(
        self,
        table: type[Base],
        values: Sequence[Mapping[str, Any]],
        record: type[_R] | None = None,
        *,
        session: Session | None = None,
    ) -> list[_R]:
        """Insert one row per mapping of column values; the one insert of every repository.

        Args:
            table: The row class.
            values: Column values, one mapping per row (already JSON-clean).
            record: The record class to return the new rows as. ``None``: the rows are sent in
                one statement and nothing is returned (bulk bookkeeping, no ORM objects built).
            session: A session to insert in (part of the caller's transaction); ``None``: a
                transaction of its own.

        Returns:
            The new rows as ``record``, in the order of ``values`` (``[]`` without a record).

        Raises:
            StoreError: The database refused the rows (nothing is kept).
        """
        if not values:
            return []
        if session is None:
            with self.transaction() as s:
                return self._insert(table, values, record, session=s)
        if record is None:
            session.execute(insert(table), [dict(v) for v in values])
            return []
        rows = [table(**v) for v in values]
        session.add_all(rows)
        session.flush()
        return [to_record(record, r) for r in rows]
