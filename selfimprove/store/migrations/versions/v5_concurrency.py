"""Schema 5: what many processes on one store need: a per-model version counter, an owner and
a heartbeat on experiments, and 64-bit columns where 32 bits overflow on PostgreSQL (whose
INTEGER is 32-bit): experiment seeds (63-bit) and checkpoint sizes (2 GiB and more).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from selfimprove.store.migrations._ops import add_column, record_schema

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def _widen(table: str, column: str, *, nullable: bool) -> None:
    """``table.column`` as BIGINT, unless it is already.

    SQLite's INTEGER already holds 64 bits; batch mode rebuilds the table there so that the
    declared type matches a new store's.
    """
    columns = {c["name"]: c for c in sa.inspect(op.get_bind()).get_columns(table)}
    if not isinstance(columns[column]["type"], sa.BigInteger):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column,
                existing_type=sa.Integer(),
                type_=sa.BigInteger(),
                existing_nullable=nullable,
            )


def upgrade() -> None:
    """Add the columns, count the versions already handed out, widen seeds and sizes; schema 5."""
    add_column(
        "models", sa.Column("last_version", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(
        "UPDATE models SET last_version = COALESCE("
        "(SELECT MAX(versions.number) FROM versions WHERE versions.model_id = models.id), 0)"
    )
    add_column("experiments", sa.Column("owner", sa.String(length=256), nullable=True))
    add_column("experiments", sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    _widen("experiments", "seed", nullable=True)
    _widen("versions", "size_bytes", nullable=False)
    record_schema(5)


def downgrade() -> None:
    """Not supported: a store is never taken back (a newer store is refused instead)."""
    raise NotImplementedError("selfimprove stores are upgraded only")
