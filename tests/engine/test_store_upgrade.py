"""Schema 4: an older store is upgraded in place, new columns added, every row kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from selfimprove.engine import SelfImprovementEngine
from selfimprove.store import SCHEMA_VERSION, ExperimentStatus, Store

NEW_TABLES = (
    "weaknesses",
    "code_improvements",
    "audit_trail",
    "improvement_history",
    "improvement_measurements",
)
NEW_COLUMNS = (
    ("experiments", "weakness_id"),
    ("experiments", "expected_improvement"),
    ("meta_learnings", "times_validated"),
)


def _columns(db: Path, table: str) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _make_old_store(home: Path, version: int) -> dict[str, int]:
    """A store with data in it, taken back to schema ``version`` (3 or 2) by hand."""
    store = Store(home=home)
    model = store.add_model("digits", "pattern_recognition", "classification")
    cap = store.upsert_capability(
        "digits/accuracy",
        type="model_objective",
        direction="maximize",
        target=0.95,
        model_id=model.id,
        objective="accuracy",
    )
    store.add_measurements(cap.id, {"validation": 0.7, "test": 0.69})
    exp = store.add_experiment(model_id=model.id, strategy="train", objective="accuracy")
    store.update_experiment(exp.id, status=ExperimentStatus.COMPLETED, reason="kept")
    ml = store.upsert_meta_learning(
        "strategy_effect",
        "train|data|classification",
        statement="train helps",
        count=3,
        successes=2,
        confidence=0.2,
    )
    store.close()
    db = home / "selfimprove.db"
    with sqlite3.connect(db) as conn:
        for table in NEW_TABLES:
            conn.execute(f"DROP TABLE {table}")
        for table, column in NEW_COLUMNS:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        if version < 3:
            conn.execute("DROP TABLE meta_learnings")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    for table, column in NEW_COLUMNS:
        assert column not in _columns(db, table)
    return {"model": model.id, "cap": cap.id, "exp": exp.id, "ml": ml.id}


def test_schema_3_store_gains_the_new_columns_in_place_and_keeps_its_rows(home: Path) -> None:
    ids = _make_old_store(home, 3)
    db = home / "selfimprove.db"
    store = Store(home=home)
    assert store.schema_version() == SCHEMA_VERSION
    for table, column in NEW_COLUMNS:
        assert column in _columns(db, table)
    assert set(NEW_TABLES) <= _tables(db)
    # every old row is still there, the new fields read as "none yet"
    [cap] = store.list_capabilities()
    assert cap.id == ids["cap"] and cap.target == 0.95
    assert [m.value for m in store.list_measurements(cap.id)] == [0.7, 0.69]
    exp = store.get_experiment(ids["exp"])
    assert exp.reason == "kept" and exp.weakness_id is None and exp.expected_improvement is None
    [ml] = store.list_meta_learnings()
    assert (ml.id, ml.statement, ml.times_validated) == (ids["ml"], "train helps", 0)
    store.close()

    # the engine works on the upgraded store, and a second open changes nothing
    with SelfImprovementEngine(home=home) as engine:
        [weak] = engine.analyze_weaknesses()  # 0.7 vs 0.95: a gap of 26 %
        assert weak.severity == "medium" and weak.capability_id == ids["cap"]
        again = engine.store.record_meta_learning(
            "strategy_effect",
            "train|data|classification",
            statement="train helps",
            count=4,
            successes=3,
            confidence=0.3,
            validated=True,
        )
        assert again.id == ids["ml"] and again.times_validated == 1
    assert Store(home=home).schema_version() == SCHEMA_VERSION


def test_schema_2_store_gets_the_table_with_the_column_and_no_alter_fails(home: Path) -> None:
    _make_old_store(home, 2)
    store = Store(home=home)
    assert "times_validated" in _columns(home / "selfimprove.db", "meta_learnings")
    rec = store.upsert_meta_learning("k", "s", statement="x", count=1, successes=1, confidence=0.1)
    assert rec.times_validated == 0
    store.close()


def test_an_upgrade_interrupted_after_some_columns_is_finished(home: Path) -> None:
    _make_old_store(home, 3)
    db = home / "selfimprove.db"
    with sqlite3.connect(db) as conn:  # as if a crash came after the first ALTER
        conn.execute("ALTER TABLE experiments ADD COLUMN weakness_id INTEGER")
    store = Store(home=home)
    assert {"weakness_id", "expected_improvement"} <= _columns(db, "experiments")
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


@pytest.mark.parametrize("table", NEW_TABLES)
def test_fresh_store_has_the_engine_tables(home: Path, table: str) -> None:
    Store(home=home).close()
    assert table in _tables(home / "selfimprove.db")
