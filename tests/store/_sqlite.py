"""Reading a SQLite store behind the Store's back (sqlite3 only), for the store's tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def tables(db: Path) -> list[str]:
    """The store's tables, by name."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        return [r[0] for r in rows]


def row_counts(db: Path) -> dict[str, int]:
    """Rows per table."""
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables(db)}


def shape(db: Path) -> dict[str, tuple[object, ...]]:
    """Each table's columns (in order, with type, nullability, default) and indexes."""
    out: dict[str, tuple[object, ...]] = {}
    with sqlite3.connect(db) as conn:
        for t in tables(db):
            if t == "alembic_version":
                continue
            columns = tuple(r[1:] for r in conn.execute(f"PRAGMA table_info({t})"))
            indexes = sorted(
                (r[1], r[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info({r[1]})")))
                for r in conn.execute(f"PRAGMA index_list({t})")
            )
            out[t] = (columns, tuple(indexes))
    return out


def recorded(db: Path) -> tuple[str, list[str]]:
    """``(meta.schema_version, [Alembic revisions])``."""
    with sqlite3.connect(db) as conn:
        schema = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        revisions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
    return schema, revisions
