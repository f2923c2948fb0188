"""Alembic migrations: the plan for each recorded state, the chain against the models, old
stores upgraded in place, a newer store refused, concurrent first opens."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from selfimprove.errors import SchemaVersionError
from selfimprove.store import SCHEMA_VERSION, Store
from selfimprove.store._schema import Base
from selfimprove.store.migrations import (
    HEAD_REVISION,
    REVISIONS,
    SCRIPT_LOCATION,
    SchemaAction,
    ensure_schema,
    plan_upgrade,
    recorded_schema,
)
from tests.store._sqlite import recorded, row_counts, shape


@pytest.mark.parametrize(
    ("schema", "revision", "action", "restamp", "start"),
    [
        (None, None, SchemaAction.CREATE, True, HEAD_REVISION),
        (6, "0006", SchemaAction.NOTHING, False, "0006"),
        (5, "0005", SchemaAction.UPGRADE, False, "0005"),
        (4, "0004", SchemaAction.UPGRADE, False, "0004"),
        (3, "0003", SchemaAction.UPGRADE, False, "0003"),
        (4, None, SchemaAction.UPGRADE, True, "0003"),  # before Alembic: schema 4 replayed
        (3, None, SchemaAction.UPGRADE, True, "0002"),
        (1, None, SchemaAction.UPGRADE, True, None),
        (2, "0004", SchemaAction.UPGRADE, True, "0001"),  # taken back by hand: the number wins
        (None, "0006", SchemaAction.UPGRADE, True, "0005"),  # meta row lost: head replayed
        (7, None, SchemaAction.REFUSE, False, None),
        (6, "0099", SchemaAction.REFUSE, False, None),
    ],
)
def test_plan_for_each_recorded_state(
    schema: int | None,
    revision: str | None,
    action: SchemaAction,
    restamp: bool,
    start: str | None,
) -> None:
    plan = plan_upgrade(schema, revision)
    assert (plan.action, plan.restamp, plan.start) == (action, restamp, start)
    assert plan.reason


def test_head_revision_is_the_schema_version() -> None:
    assert HEAD_REVISION == REVISIONS[SCHEMA_VERSION] == "0006"
    assert sorted(REVISIONS) == list(range(1, SCHEMA_VERSION + 1))


def test_the_revision_chain_builds_what_a_new_store_has(tmp_path: Path) -> None:
    chain_db, new_db = tmp_path / "chain.db", tmp_path / "home" / "selfimprove.db"
    engine = create_engine(f"sqlite:///{chain_db}")
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(SCRIPT_LOCATION))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
    Store(home=tmp_path / "home").close()
    assert shape(chain_db) == shape(new_db)
    assert recorded(chain_db) == recorded(new_db) == (str(SCHEMA_VERSION), [HEAD_REVISION])


@pytest.mark.usefixtures("store_url")
def test_a_store_at_the_head_is_left_alone(home: Path) -> None:
    store = Store(home=home)
    assert ensure_schema(store.engine, store.url).action is SchemaAction.NOTHING
    store.close()


def _take_back_to_schema_1(db: Path) -> None:
    """Drop what schemas 2-5 added and the Alembic revision, as a schema-1 release left it."""
    with sqlite3.connect(db) as conn:
        for table in (
            "state",
            "cycle_metrics",
            "meta_learnings",
            "weaknesses",
            "code_improvements",
            "audit_trail",
            "improvement_history",
            "improvement_measurements",
            "alembic_version",
        ):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX ix_measurements_capability_split_id")
        conn.execute("ALTER TABLE experiments DROP COLUMN weakness_id")
        conn.execute("ALTER TABLE experiments DROP COLUMN expected_improvement")
        conn.execute("ALTER TABLE experiments DROP COLUMN owner")
        conn.execute("ALTER TABLE experiments DROP COLUMN heartbeat_at")
        conn.execute("ALTER TABLE models DROP COLUMN last_version")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")


def test_a_schema_1_store_is_upgraded_in_place_to_the_head(home: Path) -> None:
    store = Store(home=home)
    model = store.add_model("digits", "t", "f")
    exp = store.add_experiment(model_id=model.id, strategy="train")
    store.close()
    db = home / "selfimprove.db"
    head_shape = shape(db)
    _take_back_to_schema_1(db)
    before = row_counts(db)

    store = Store(home=home)
    assert store.schema_version() == SCHEMA_VERSION
    assert [m.name for m in store.list_models()] == ["digits"]
    assert store.get_experiment(exp.id).weakness_id is None
    store.close()
    assert shape(db) == head_shape
    assert recorded(db) == (str(SCHEMA_VERSION), [HEAD_REVISION])
    after = row_counts(db)
    assert {t: after[t] for t in before if t != "meta"} == {
        t: n for t, n in before.items() if t != "meta"
    }


def test_a_store_with_an_unknown_revision_is_refused_and_left_untouched(home: Path) -> None:
    Store(home=home).close()
    db = home / "selfimprove.db"
    with sqlite3.connect(db) as conn:  # as a newer selfimprove would leave it
        conn.execute("UPDATE alembic_version SET version_num = '0007'")
    before = db.read_bytes()
    with pytest.raises(SchemaVersionError, match=r"'0007'.*upgrade selfimprove"):
        Store(home=home)
    assert db.read_bytes() == before


_OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
from selfimprove.store import Store
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
Store(home=sys.argv[1]).close()
"""


@pytest.mark.usefixtures("store_url")  # PostgreSQL: its own new schema in SELFIMPROVE_DB
def test_processes_opening_one_new_store_at_once_all_succeed(home: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_WHEN_TOLD, str(home), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    time.sleep(2.0)  # let every process import and wait at the line
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [r[1].decode()[-800:] for r in results]
    store = Store(home=home)
    with store.engine.connect() as conn:
        assert recorded_schema(conn) == (SCHEMA_VERSION, HEAD_REVISION)
        assert conn.execute(text("SELECT count(*) FROM meta")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert set(Base.metadata.tables) <= set(inspect(conn).get_table_names())
    store.close()


def test_the_revisions_ship_in_the_wheel() -> None:
    from setuptools import find_packages

    root = Path(__file__).resolve().parents[2]
    found = find_packages(where=str(root), include=["selfimprove*"])  # pyproject's rule
    assert {"selfimprove.store.migrations", "selfimprove.store.migrations.versions"} <= set(found)
    assert (SCRIPT_LOCATION / "env.py").is_file()
    assert len(list((SCRIPT_LOCATION / "versions").glob("v*_*.py"))) == len(REVISIONS)
