"""Idempotent Alembic operations for the revisions: each does nothing when already done.

Stores written before Alembic record only their schema number, and the releases of schema 4
added indexes without raising it; such a store is stamped one revision before its number and
that revision is replayed (see :func:`~selfimprove.store.migrations.plan_upgrade`), so every
operation here first looks whether its table, column or index is there.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

__all__ = ["add_column", "create_index", "create_table", "record_schema"]


def _inspector() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def create_table(name: str, *elements: Any) -> None:
    """``op.create_table`` unless the table exists."""
    if not _inspector().has_table(name):
        op.create_table(name, *elements)


def create_index(name: str, table: str, columns: list[str], *, unique: bool = False) -> None:
    """``op.create_index`` unless the table has an index of that name."""
    if name not in {ix["name"] for ix in _inspector().get_indexes(table)}:
        op.create_index(name, table, columns, unique=unique)


def add_column(table: str, column: sa.Column[Any]) -> None:
    """``op.add_column`` unless the table has a column of that name (an interrupted upgrade)."""
    if column.name not in {c["name"] for c in _inspector().get_columns(table)}:
        op.add_column(table, column)


def record_schema(version: int) -> None:
    """Write ``version`` as the ``meta`` table's ``schema_version`` (read by older code too)."""
    meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    bind = op.get_bind()
    done = bind.execute(
        meta.update().where(meta.c.key == "schema_version").values(value=str(version))
    )
    if done.rowcount == 0:
        bind.execute(meta.insert().values(key="schema_version", value=str(version)))
