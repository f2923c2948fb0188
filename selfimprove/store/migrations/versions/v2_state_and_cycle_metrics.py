"""Schema 2: component state (hormones, triggers, bandit) and seed 000's cycle metrics.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa

from selfimprove.store.migrations._ops import create_index, create_table, record_schema

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``state`` and ``cycle_metrics`` if missing and record schema 2."""
    create_table(
        "state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    create_table(
        "cycle_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("models_improved", sa.Integer(), nullable=False),
        sa.Column("total_improvement", sa.Float(), nullable=False),
        sa.Column("best_performance_gain", sa.Float(), nullable=False),
        sa.Column("average_training_time", sa.Float(), nullable=False),
        sa.Column("hormone_levels", sa.JSON(), nullable=False),
        sa.Column("genetic_activations", sa.Integer(), nullable=False),
        sa.Column("memory_usage", sa.Float(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    create_index("ix_cycle_metrics_iteration", "cycle_metrics", ["iteration"])
    record_schema(2)


def downgrade() -> None:
    """Not supported: a store is never taken back (a newer store is refused instead)."""
    raise NotImplementedError("selfimprove stores are upgraded only")
