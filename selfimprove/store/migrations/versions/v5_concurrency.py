"""Schema 5: what many processes on one store need: a per-model version counter, an owner and
a heartbeat on experiments, and 63-bit experiment seeds (PostgreSQL's INTEGER is 32-bit).

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


def upgrade() -> None:
    """Add the columns, count the versions already handed out, widen the seed; schema 5."""
    add_column(
        "models", sa.Column("last_version", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(
        "UPDATE models SET last_version = COALESCE("
        "(SELECT MAX(versions.number) FROM versions WHERE versions.model_id = models.id), 0)"
    )
    add_column("experiments", sa.Column("owner", sa.String(length=256), nullable=True))
    add_column("experiments", sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    seed = {c["name"]: c for c in sa.inspect(op.get_bind()).get_columns("experiments")}["seed"]
    if not isinstance(seed["type"], sa.BigInteger):
        # SQLite's INTEGER already holds 64 bits; batch mode rebuilds the table there so that
        # the declared type matches a new store's.
        with op.batch_alter_table("experiments") as batch:
            batch.alter_column(
                "seed", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=True
            )
    record_schema(5)


def downgrade() -> None:
    """Not supported: a store is never taken back (a newer store is refused instead)."""
    raise NotImplementedError("selfimprove stores are upgraded only")
