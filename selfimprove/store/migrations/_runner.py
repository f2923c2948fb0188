"""Bring a store to the head revision when it opens, serialised across processes.

The fast path (a store already at the head: every CLI command, every reopened store) reads two
rows and never loads Alembic. Otherwise one process at a time migrates: SQLite by
``BEGIN IMMEDIATE`` (the others wait in the busy timeout), PostgreSQL by
``pg_advisory_xact_lock``; the store is read again under the lock, so a process that waited
finds the work done. The whole migration, Alembic's version row and ``meta.schema_version``
included, is one transaction.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, insert, inspect, select, text

from selfimprove.errors import SchemaVersionError, StoreError
from selfimprove.store._schema import SCHEMA_VERSION, Base, MetaRow
from selfimprove.store.migrations._plan import (
    HEAD_REVISION,
    SchemaAction,
    UpgradePlan,
    plan_upgrade,
)

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

__all__ = ["SCRIPT_LOCATION", "WRITE_OPTION", "ensure_schema", "recorded_schema"]

#: The folder Alembic reads (``env.py`` and ``versions/``), shipped inside the package.
SCRIPT_LOCATION = Path(__file__).resolve().parent
#: Execution option of a connection that will write: the store's SQLite engine begins its
#: transactions with ``BEGIN IMMEDIATE`` (the write lock first), others with ``BEGIN``.
WRITE_OPTION = "selfimprove_write"
#: The PostgreSQL advisory lock held while a store migrates (any constant shared by all).
_PG_LOCK_KEY = 0x5E1F_1A7E


def recorded_schema(conn: Connection) -> tuple[int | None, str | None]:
    """What a store says of itself: ``(meta.schema_version, Alembic revision)``.

    Raises:
        StoreError: A ``schema_version`` that is not a number.
    """
    inspector = inspect(conn)
    schema: int | None = None
    if inspector.has_table(MetaRow.__tablename__):
        value = conn.execute(
            select(MetaRow.value).where(MetaRow.key == "schema_version")
        ).scalar_one_or_none()
        if value is not None:
            try:
                schema = int(value)
            except ValueError:
                raise StoreError(
                    f"the store's meta.schema_version is {value!r}, not a number; "
                    "restore the store from a backup or use another --home."
                ) from None
    revision: str | None = None
    if inspector.has_table("alembic_version"):
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return schema, revision


def _refuse(plan: UpgradePlan, display_url: str) -> SchemaVersionError:
    return SchemaVersionError(
        f"the store at {display_url} {plan.reason}, newer than this selfimprove understands "
        f"(schema {SCHEMA_VERSION}); upgrade selfimprove or use another --home."
    )


def ensure_schema(engine: Engine, display_url: str) -> UpgradePlan:
    """Bring the store behind ``engine`` to the head revision (nothing when it is there).

    Args:
        engine: The store's engine.
        display_url: The URL to name in errors (password hidden).

    Returns:
        The plan that was carried out (read again under the migration lock).

    Raises:
        SchemaVersionError: The store was written by a newer schema (nothing is touched).
        StoreError: A ``schema_version`` that is not a number.
        sqlalchemy.exc.SQLAlchemyError: The database failed (the caller names the store).
    """
    with engine.connect() as conn:
        plan = plan_upgrade(*recorded_schema(conn))
    if plan.action is SchemaAction.NOTHING:
        return plan
    if plan.action is SchemaAction.REFUSE:
        raise _refuse(plan, display_url)
    with _migration_lock(engine) as conn:
        plan = plan_upgrade(*recorded_schema(conn))  # another process may have done it
        if plan.action is SchemaAction.REFUSE:
            raise _refuse(plan, display_url)
        if plan.action is SchemaAction.CREATE:
            _create(conn)
        elif plan.action is SchemaAction.UPGRADE:
            _run_alembic(conn, plan)
    return plan


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the store's migration lock; commits at the end.

    SQLite: the store's engine begins every transaction itself (see
    :func:`selfimprove.store._database._create_engine`); a connection marked with
    :data:`WRITE_OPTION` begins with ``BEGIN IMMEDIATE``, which takes the write lock at once
    (others wait in the busy timeout), so the migration's DDL is one locked unit. PostgreSQL:
    an advisory lock held until the transaction ends.
    """
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield conn


def _create(conn: Connection) -> None:
    """A new store: every table from the models, ``meta.schema_version``, stamped at the head.

    Alembic's recipe for a database built from scratch; the stamp goes through a
    ``MigrationContext`` and a script directory read once a process, not through
    ``command.stamp`` (which reads ``env.py`` and every revision again): a new store is opened
    by every test and every first CLI command.
    """
    from alembic.runtime.migration import MigrationContext

    Base.metadata.create_all(conn)
    conn.execute(insert(MetaRow).values(key="schema_version", value=str(SCHEMA_VERSION)))
    MigrationContext.configure(conn).stamp(_script_directory(), HEAD_REVISION)


@functools.cache
def _script_directory() -> ScriptDirectory:
    """The revision chain, read once a process."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(SCRIPT_LOCATION))


def _run_alembic(conn: Connection, plan: UpgradePlan) -> None:
    """Stamp (when the plan says so) and upgrade to the head on ``conn``, inside its transaction."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    config.attributes["connection"] = conn
    if plan.restamp:
        command.stamp(config, plan.start or "base", purge=True)
    command.upgrade(config, "head")
