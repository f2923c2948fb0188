"""Schema 4: the engine's tables (weaknesses, code improvements, audit trail, improvement
history and measurements), three columns on older tables, and the indexes of the engine's
per-cycle reads.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa

from selfimprove.store.migrations._ops import (
    add_column,
    create_index,
    create_table,
    record_schema,
)

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add what schema 4 has and the store lacks, keeping every row; record schema 4."""
    add_column("experiments", sa.Column("weakness_id", sa.Integer(), nullable=True))
    add_column("experiments", sa.Column("expected_improvement", sa.Float(), nullable=True))
    add_column(
        "meta_learnings",
        sa.Column("times_validated", sa.Integer(), server_default="0", nullable=False),
    )
    # The newest value of a capability in one split, read for every capability each cycle.
    create_index(
        "ix_measurements_capability_split_id", "measurements", ["capability_id", "split", "id"]
    )
    _weaknesses()
    _code_improvements()
    create_table(
        "audit_trail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("improvement_id", sa.Integer(), nullable=True),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("sha256_before", sa.String(length=64), nullable=True),
        sa.Column("sha256_after", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    create_index("ix_audit_trail_improvement_id", "audit_trail", ["improvement_id"])
    create_table(
        "improvement_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("improvements", sa.JSON(), nullable=False),
        sa.Column("performance_delta", sa.Float(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _improvement_measurements()
    record_schema(4)


def _weaknesses() -> None:
    create_table(
        "weaknesses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("impact", sa.Float(), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("capability_id", sa.Integer(), nullable=True),
        sa.Column("gap", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    create_index("ix_weaknesses_status", "weaknesses", ["status"])
    create_index("ix_weaknesses_capability", "weaknesses", ["capability_id"])


def _code_improvements() -> None:
    create_table(
        "code_improvements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("function_name", sa.String(length=256), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("new_code", sa.Text(), nullable=False),
        sa.Column("original_content", sa.LargeBinary(), nullable=False),
        sa.Column("patched_content", sa.LargeBinary(), nullable=False),
        sa.Column("sha256_before", sa.String(length=64), nullable=False),
        sa.Column("sha256_after", sa.String(length=64), nullable=False),
        sa.Column("md5_before", sa.String(length=32), nullable=False),
        sa.Column("md5_after", sa.String(length=32), nullable=False),
        sa.Column("check_command", sa.JSON(), nullable=False),
        sa.Column("check_before", sa.JSON(), nullable=False),
        sa.Column("check_after", sa.JSON(), nullable=False),
        sa.Column("performance", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.Column("rolled_back_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def _improvement_measurements() -> None:
    create_table(
        "improvement_measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("metric_name", sa.String(length=256), nullable=False),
        sa.Column("capability_id", sa.Integer(), nullable=True),
        sa.Column("experiment_id", sa.Integer(), nullable=True),
        sa.Column("improvement_id", sa.Integer(), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("before_value", sa.Float(), nullable=True),
        sa.Column("after_value", sa.Float(), nullable=True),
        sa.Column("absolute_change", sa.Float(), nullable=True),
        sa.Column("relative_change", sa.Float(), nullable=True),
        sa.Column("percent_change", sa.Float(), nullable=True),
        sa.Column("improvement", sa.Float(), nullable=True),
        sa.Column("significant", sa.Boolean(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("test", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.String(length=16), nullable=False),
        sa.Column("n_before", sa.Integer(), nullable=False),
        sa.Column("n_after", sa.Integer(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("measured_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    create_index(
        "ix_improvement_measurements_metric",
        "improvement_measurements",
        ["metric_name", "measured_at"],
    )


def downgrade() -> None:
    """Not supported: a store is never taken back (a newer store is refused instead)."""
    raise NotImplementedError("selfimprove stores are upgraded only")
