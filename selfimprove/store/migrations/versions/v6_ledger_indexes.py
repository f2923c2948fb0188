"""Schema 6: indexes that keep a cycle's reads independent of the ledger's length — the newest
cycle number (``max(experiments.cycle)``, read every cycle) and the experiments in one status
(the running ones, checked for a dead owner every cycle) were full scans of ``experiments``:
0.16 s and 0.08 s a cycle with 100,000 experiments.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from selfimprove.store.migrations._ops import create_index, record_schema

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index experiments by cycle and by status; schema 6."""
    create_index("ix_experiments_cycle", "experiments", ["cycle"])
    create_index("ix_experiments_status", "experiments", ["status"])
    record_schema(6)


def downgrade() -> None:
    """Not supported: a store is never taken back (a newer store is refused instead)."""
    raise NotImplementedError("selfimprove stores are upgraded only")
