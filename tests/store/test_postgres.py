"""PostgreSQL's side of the migrations: the revision chain against the models, a schema-4 store
upgraded in place (its 32-bit columns widened), a newer store refused. Each test gets its own
empty schema of the session's throwaway server, and is skipped where none can run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import BigInteger, Connection, Engine, create_engine, inspect, text

from selfimprove.errors import SchemaVersionError
from selfimprove.store import SCHEMA_VERSION, ExperimentStatus, Store
from selfimprove.store._schema import Base
from selfimprove.store.migrations import HEAD_REVISION, SCRIPT_LOCATION, recorded_schema


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    """An engine on the test's own empty PostgreSQL schema."""
    e = create_engine(postgres_url)
    yield e
    e.dispose()


def _upgrade(conn: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


def test_the_revision_chain_builds_what_a_new_store_has(engine: Engine) -> None:
    with engine.begin() as conn:
        _upgrade(conn, "head")
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert recorded_schema(conn) == (SCHEMA_VERSION, HEAD_REVISION)


def test_a_schema_4_store_is_upgraded_in_place_and_takes_63_bit_seeds(
    engine: Engine, postgres_url: str
) -> None:
    with engine.begin() as conn:
        _upgrade(conn, "0004")
        conn.execute(
            text(
                "INSERT INTO models (id, name, task, family, description, created_at) "
                "VALUES (1, 'a', 't', 'f', '', now())"
            )
        )
        for number in (1, 3):
            conn.execute(
                text(
                    "INSERT INTO versions (model_id, number, status, strategy, origin, params, "
                    "metrics, manifest_path, sha256, size_bytes, created_at) VALUES (1, :n, "
                    "'backup', 'train', 'user', '{}', '{}', 'm', '', 1, now())"
                ),
                {"n": number},
            )
        conn.execute(
            text(
                "INSERT INTO experiments (model_id, strategy, params, hypothesis, seed, status, "
                "reason, statistics, compute, durations, created_at) VALUES (1, 'train', '{}', "
                "'', 2147483647, 'completed', 'kept', '{}', '{}', '{}', now())"
            )
        )
    store = Store(postgres_url)
    assert store.schema_version() == SCHEMA_VERSION
    columns = {
        (t, c["name"]): c["type"]
        for t in ("experiments", "versions")
        for c in inspect(store.engine).get_columns(t)
    }
    assert isinstance(columns["experiments", "seed"], BigInteger)
    assert isinstance(columns["versions", "size_bytes"], BigInteger)
    model = store.get_model("a")
    assert store.reserve_version_number(model.id) == 4  # counted past the versions recorded
    (old,) = store.list_experiments()
    assert (old.seed, old.reason) == (2**31 - 1, "kept")
    new = store.add_experiment(
        model_id=model.id, strategy="train", seed=2**63 - 1, status=ExperimentStatus.RUNNING
    )
    assert store.get_experiment(new.id).seed == 2**63 - 1
    store.close()


def test_a_newer_store_is_refused_and_left_untouched(engine: Engine, postgres_url: str) -> None:
    Store(postgres_url).close()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE meta SET value = :v WHERE key = 'schema_version'"),
            {"v": str(SCHEMA_VERSION + 1)},
        )
    with pytest.raises(SchemaVersionError, match="newer than this selfimprove understands"):
        Store(postgres_url)
    with engine.connect() as conn:
        assert recorded_schema(conn) == (SCHEMA_VERSION + 1, HEAD_REVISION)
