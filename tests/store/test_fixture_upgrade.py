"""A real store of the previous release (``selfimprove run --cycles 2``: 5 models, 6
experiments, schema 4, no Alembic revision) is upgraded in place and keeps every row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selfimprove.store import SCHEMA_VERSION, Store, VersionStatus
from selfimprove.store.migrations import HEAD_REVISION
from tests.store._sqlite import recorded, row_counts, shape, tables

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store_schema4.db"


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(FIXTURE, home / "selfimprove.db")
    return home


def test_the_fixture_is_a_store_from_before_alembic() -> None:
    assert "alembic_version" not in tables(FIXTURE)
    assert row_counts(FIXTURE)["models"] == 5 and row_counts(FIXTURE)["experiments"] == 6


def test_a_previous_release_store_is_upgraded_in_place_and_keeps_every_row(
    old_home: Path,
) -> None:
    db = old_home / "selfimprove.db"
    before = row_counts(db)
    store = Store(home=old_home)
    assert store.schema_version() == SCHEMA_VERSION
    models = store.list_models()
    assert len(models) == 5 and len(store.list_experiments()) == 6
    for model in models:
        assert model.incumbent_version_id is not None
        incumbent = store.version_by_id(model.incumbent_version_id)
        assert incumbent.model_id == model.id and incumbent.status is VersionStatus.INCUMBENT
    store.close()

    after = row_counts(db)
    assert after.pop("alembic_version") == 1
    assert after == before
    assert recorded(db) == (str(SCHEMA_VERSION), [HEAD_REVISION])


def test_opening_the_upgraded_store_again_changes_nothing(old_home: Path) -> None:
    db = old_home / "selfimprove.db"
    Store(home=old_home).close()
    counts, layout, bytes_before = row_counts(db), shape(db), db.read_bytes()
    store = Store(home=old_home)
    assert len(store.list_models()) == 5
    store.close()
    assert (row_counts(db), shape(db)) == (counts, layout)
    assert db.read_bytes() == bytes_before
