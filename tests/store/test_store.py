from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from selfimprove.errors import ConfigError, NotFoundError, SchemaVersionError, StoreError
from selfimprove.seeding import derive_seed
from selfimprove.store import (
    SCHEMA_VERSION,
    Decision,
    ExperimentStatus,
    Store,
    VersionStatus,
    WeaknessStatus,
    utcnow,
)

# Every test on SQLite and on PostgreSQL (see tests/conftest.py), but those that read SQLite's
# own file or name a URL of their own.
pytestmark = pytest.mark.usefixtures("store_url")


@pytest.mark.sqlite_only
def test_default_store_is_sqlite_in_home_with_wal(home: Path) -> None:
    store = Store(home=home)
    assert (home / "selfimprove.db").exists()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert store.schema_version() == SCHEMA_VERSION


@pytest.mark.sqlite_only
def test_selfimprove_db_env_overrides_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "elsewhere.db"
    monkeypatch.setenv("SELFIMPROVE_DB", f"sqlite:///{db}")
    Store(home=tmp_path / "home")
    assert db.exists()


@pytest.mark.sqlite_only
def test_newer_schema_is_refused_and_left_untouched(home: Path) -> None:
    Store(home=home).close()
    db = home / "selfimprove.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    before = db.read_bytes()
    with pytest.raises(SchemaVersionError, match="newer than this selfimprove understands"):
        Store(home=home)
    assert db.read_bytes() == before


@pytest.mark.sqlite_only
@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x/y"])
def test_malformed_url_is_a_config_error(url: str, home: Path) -> None:
    with pytest.raises(ConfigError, match="database URL"):
        Store(url, home=home)


@pytest.mark.sqlite_only
def test_unreachable_postgres_is_a_store_error(home: Path) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        Store("postgresql://nobody:secret@127.0.0.1:1/none", home=home)


def test_failed_transaction_changes_nothing(home: Path) -> None:
    store = Store(home=home)
    store.add_model("a", "task", "fam")
    with pytest.raises(ConfigError):
        store.add_model("a", "task", "fam")  # duplicate name: refused inside the transaction
    assert [m.name for m in store.list_models()] == ["a"]


def test_database_errors_become_store_errors(home: Path) -> None:
    from selfimprove.store._schema import ModelRow

    store = Store(home=home)
    with pytest.raises(StoreError, match="rolled back"), store.transaction() as s:
        s.add(ModelRow(name="x"))  # missing required columns
    assert store.list_models() == []


def test_unknown_model_lists_known_ones(home: Path) -> None:
    store = Store(home=home)
    store.add_model("digits", "t", "f")
    with pytest.raises(NotFoundError, match="registered models: digits"):
        store.get_model("nope")


def test_a_dead_processs_running_experiment_becomes_stale_and_a_live_ones_does_not(
    home: Path,
) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    mine = store.add_experiment(model_id=m.id, strategy="train", status=ExperimentStatus.RUNNING)
    done = store.add_experiment(model_id=m.id, strategy="train")
    store.update_experiment(done.id, status=ExperimentStatus.COMPLETED)
    child = (
        "import os, sys\n"
        "from selfimprove.store import ExperimentStatus, Store\n"
        "s = Store(home=sys.argv[1])\n"
        "e = s.add_experiment(model_id=1, strategy='train', status=ExperimentStatus.RUNNING)\n"
        "print(e.id, flush=True)\n"
        "os._exit(0)  # dies with its experiment running\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(home)], capture_output=True, text=True, check=True
    )
    theirs = int(out.stdout)
    # Read at once, before anything is written: the dead owner's experiment reads as stale.
    seen = {e.id: e for e in store.as_seen_now(store.list_experiments())}
    assert seen[theirs].status is ExperimentStatus.STALE and "has ended" in seen[theirs].reason
    assert seen[mine.id].status is ExperimentStatus.RUNNING
    assert store.get_experiment(theirs).status is ExperimentStatus.RUNNING  # nothing written
    stale = Store(home=home).mark_stale_experiments()
    assert [e.id for e in stale] == [theirs]
    assert "has ended" in stale[0].reason
    assert store.get_experiment(mine.id).status is ExperimentStatus.RUNNING  # this process lives
    assert store.get_experiment(done.id).status is ExperimentStatus.COMPLETED
    store.close()


def test_63_bit_seeds_are_stored_and_read_back_exactly(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    seed = derive_seed(0, 1, "a", "train")  # as the loop derives them
    assert seed >= 2**31  # past PostgreSQL's INTEGER, where schema 4 failed every experiment
    one = store.add_experiment(model_id=m.id, strategy="train", seed=2**63 - 1)
    (two,) = store.add_experiments([{"model_id": m.id, "strategy": "train", "seed": seed}])
    store.update_experiment(two.id, status=ExperimentStatus.COMPLETED)
    assert store.get_experiment(one.id).seed == 2**63 - 1
    assert [e.seed for e in store.list_experiments()] == [2**63 - 1, seed]
    store.close()


def test_a_checkpoint_of_5_gib_is_recorded_with_its_size(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    v = store.add_version(
        model_id=m.id, number=1, parent_id=None, status=VersionStatus.INCUMBENT, strategy="initial",
        origin="user", params={}, metrics={}, checkpoint_path="x", manifest_path="y",
        sha256="0" * 64, size_bytes=5 * 2**30,
    )  # fmt: skip
    assert store.get_version(m, 1).size_bytes == v.size_bytes == 5 * 2**30
    store.close()


def test_records_are_frozen(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    with pytest.raises(AttributeError):
        m.name = "b"  # type: ignore[misc]


def test_capability_registration_is_idempotent(home: Path) -> None:
    store = Store(home=home)
    cap = store.upsert_capability("a/acc", type="t", direction="maximize", target=0.9)
    store.add_measurements(cap.id, {"validation": 0.5})
    again = store.upsert_capability(
        "a/acc", type="t", direction="maximize", target=0.95, description="new"
    )
    assert again.id == cap.id and again.target == 0.95 and again.description == "new"
    assert len(store.list_measurements(cap.id)) == 1


def test_nan_statistics_are_stored_as_null(home: Path) -> None:
    store = Store(home=home)
    e = store.add_experiment(model_id=None, strategy="train")
    store.update_experiment(e.id, statistics={"p_value": float("nan"), "after": 1.0})
    assert store.get_experiment(e.id).statistics == {"p_value": None, "after": 1.0}


@pytest.mark.sqlite_only
def test_older_schema_is_upgraded_in_place(home: Path) -> None:
    Store(home=home).close()
    db = home / "selfimprove.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE meta_learnings")
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    store = Store(home=home)
    assert store.schema_version() == SCHEMA_VERSION
    store.upsert_meta_learning("k", "s", statement="x", count=1, successes=1, confidence=0.5)
    again = store.upsert_meta_learning(
        "k", "s", statement="y", count=2, successes=1, confidence=0.4
    )
    assert [m.statement for m in store.list_meta_learnings()] == ["y"] and again.count == 2


def test_component_state_round_trips(home: Path) -> None:
    store = Store(home=home)
    assert store.load_state("hormones") is None
    store.save_state("hormones", {"levels": {"dopamine": 0.7}})
    store.save_state("hormones", {"levels": {"dopamine": 0.8}})
    assert store.load_state("hormones") == {"levels": {"dopamine": 0.8}}


def test_batch_is_one_transaction_whose_reads_see_its_own_writes(home: Path) -> None:
    store, other = Store(home=home), Store(home=home)
    with store.batch():
        assert store.in_batch
        store.add_model("a", "task", "fam")
        store.add_model("b", "task", "fam")
        assert [m.name for m in store.list_models()] == ["a", "b"]  # the batch's own writes
        assert other.list_models() == []  # nothing committed yet
    assert not store.in_batch
    assert [m.name for m in other.list_models()] == ["a", "b"]


def test_failed_write_inside_a_batch_keeps_nothing_even_when_caught(home: Path) -> None:
    store = Store(home=home)
    with pytest.raises(StoreError, match="whole batch was rolled back"), store.batch():
        store.add_model("a", "task", "fam")
        with pytest.raises(ConfigError):
            store.add_model("a", "task", "fam")  # duplicate: caught here, the batch still fails
    assert store.list_models() == []
    store.add_model("a", "task", "fam")  # the store is usable afterwards
    assert [m.name for m in store.list_models()] == ["a"]


def test_a_read_that_fails_inside_a_batch_does_not_spoil_it(home: Path) -> None:
    store = Store(home=home)
    with store.batch():
        store.add_model("a", "task", "fam")
        with pytest.raises(NotFoundError):
            store.get_model("nope")
    assert [m.name for m in store.list_models()] == ["a"]


def test_a_batch_belongs_to_its_thread(home: Path) -> None:
    import threading

    store = Store(home=home)
    seen: list[bool] = []
    with store.batch():
        t = threading.Thread(target=lambda: seen.append(store.in_batch))
        t.start()
        t.join()
    assert seen == [False]


@pytest.mark.sqlite_only
def test_an_older_store_gets_the_new_indexes(home: Path) -> None:
    Store(home=home).close()
    db = home / "selfimprove.db"
    with sqlite3.connect(db) as conn:  # as a release before Alembic wrote it: no revision
        conn.execute("DROP INDEX ix_measurements_capability_split_id")
        conn.execute("DROP TABLE alembic_version")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    Store(home=home).close()
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"ix_measurements_capability_split_id", "ix_weaknesses_capability"} <= names


def test_latest_measurements_of_every_capability_match_one_by_one(home: Path) -> None:
    store = Store(home=home)
    caps = [
        store.upsert_capability(f"c{i}", type="t", direction="maximize", target=0.9).id
        for i in range(5)
    ]
    store.add_measurements(caps[0], {"validation": 0.5, "test": 0.6})
    store.add_measurements(caps[0], {"validation": 0.7, "test": 0.1})
    store.add_measurements(caps[1], {"global": 3.0})
    store.add_measurements(caps[1], {"global": 2.0})
    store.add_measurements(caps[2], {"global": 1.0})
    store.add_measurements(caps[2], {"validation": 0.4})  # validation first, even if older
    store.add_measurements(caps[2], {"global": 9.0})
    store.add_measurements(caps[3], {"test": 0.99})  # only a split that never decides
    latest = store.latest_measurements()
    assert set(latest) == {caps[0], caps[1], caps[2]}
    assert (latest[caps[0]].value, latest[caps[1]].value, latest[caps[2]].value) == (0.7, 2.0, 0.4)
    for cap_id in caps:
        assert latest.get(cap_id) == store.latest_measurement(cap_id)
    assert store.latest_measurements(("global",))[caps[2]].value == 9.0
    counts = store.count_measurements_by_capability()
    assert counts == {c: store.count_measurements(c) for c in caps if store.count_measurements(c)}
    with pytest.raises(ConfigError, match="at least one split"):
        store.latest_measurements(())


def test_capabilities_with_a_target_are_listed_as_list_capabilities_has_them(home: Path) -> None:
    store = Store(home=home)
    for name, target in (("a", 0.9), ("b", None), ("c", 2.0)):
        store.upsert_capability(name, type="t", direction="maximize", target=target, unit="s")
    targeted = store.list_capabilities_with_target()
    assert [c.name for c in targeted] == ["a", "c"]
    assert targeted == [c for c in store.list_capabilities() if c.target is not None]


def test_weaknesses_added_and_updated_together_follow_the_single_rules(home: Path) -> None:
    store = Store(home=home)
    spec = {"type": "efficiency", "severity": "low", "impact": 0.3, "priority": 0.075}
    a, b, c = store.add_weaknesses(
        [{"name": n, **spec, "gap": g} for n, g in (("a", 0.1), ("b", float("inf")), ("c", None))]
    )
    assert [w.name for w in store.list_weaknesses()] == ["a", "b", "c"]
    assert b.gap is None and a.status is WeaknessStatus.OPEN and a.created_at == a.updated_at
    with pytest.raises(StoreError, match="a weakness needs"):
        store.add_weaknesses([{"name": "d", "type": "efficiency"}])
    done = store.update_weaknesses(
        {a.id: {"gap": 0.2, "evidence": {"x": 1}}, b.id: {"status": "resolved", "resolution": "ok"}}
    )
    assert done[a.id].gap == 0.2 and done[a.id].evidence == {"x": 1}
    assert done[b.id].status is WeaknessStatus.RESOLVED and done[b.id].resolved_at is not None
    assert store.get_weakness(c.id) == c  # not named, not touched
    with pytest.raises(NotFoundError, match="unknown weakness ids"):
        store.update_weaknesses({a.id: {"gap": 0.9}, 999: {"gap": 0.9}})
    with pytest.raises(ConfigError, match="cannot become open"):
        store.update_weaknesses({a.id: {"gap": 0.9}, b.id: {"status": "open"}})
    assert store.get_weakness(a.id).gap == 0.2  # a refused update changes nothing
    assert store.update_weaknesses({}) == {} and store.add_weaknesses([]) == []


def test_events_added_together(home: Path) -> None:
    store = Store(home=home)
    store.add_events(
        [{"kind": "k1", "message": "one", "payload": {"p": float("nan")}}, {"kind": "k2"}]
    )
    events = store.list_events()  # newest first
    assert [(e.kind, e.message, e.payload) for e in events] == [
        ("k2", "", {}),
        ("k1", "one", {"p": None}),
    ]
    with pytest.raises(StoreError, match="an event needs a kind"):
        store.add_events([{"message": "no kind"}])


def test_experiment_outline_matches_the_full_records(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("m", "t", "f")
    a = store.add_experiment(model_id=m.id, strategy="train", cycle=1)
    store.update_experiment(a.id, status=ExperimentStatus.COMPLETED, decision=Decision.REJECT)
    store.add_experiment(model_id=m.id, strategy="evolve", cycle=2)
    store.add_experiment(model_id=None, strategy="engine_template")
    outline = store.experiment_outline()
    full = store.list_experiments()
    assert outline == [
        (
            e.id,
            e.model_id,
            e.cycle,
            e.strategy,
            e.status.value,
            e.decision.value if e.decision else None,
        )
        for e in full
    ]
    assert outline[0] == (a.id, m.id, 1, "train", "completed", "reject")
    assert store.experiment_outline(after_id=a.id) == outline[1:]
    assert [e.id for e in store.list_experiments(after_id=a.id)] == [e.id for e in full[1:]]


def test_a_cycle_without_experiments_still_uses_its_number(home: Path) -> None:
    store = Store(home=home)
    model = store.add_model("m", "pattern_recognition", "classification")
    store.add_experiment(model_id=model.id, strategy="train", cycle=1)
    assert store.max_cycle() == 1
    # Cycle 2's only task said it did not apply: no experiment, but its metrics row counts.
    store.add_cycle_metrics(
        iteration=2,
        models_improved=0,
        total_improvement=0.0,
        best_performance_gain=0.0,
        average_training_time=0.0,
        hormone_levels={},
        genetic_activations=0,
        memory_usage=0.0,
        timestamp=utcnow(),
        extra={},
    )
    assert store.max_cycle() == 2
    store.close()


def test_a_number_too_large_for_the_database_is_a_store_error(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    with pytest.raises(StoreError, match=r"too large|out of range"):
        store.get_experiment(2**70)
    with pytest.raises(StoreError, match=r"too large|out of range"):
        store.add_experiment(model_id=m.id, strategy="train", cycle=2**70)
    assert store.list_experiments() == []  # rolled back, nothing half-written
    store.close()


def _version(store: Store, model_id: int, status: VersionStatus) -> int:
    number = store.reserve_version_number(model_id)
    return store.add_version(
        model_id=model_id,
        number=number,
        parent_id=None,
        status=status,
        strategy="train",
        origin="test",
        params={},
        metrics={},
        checkpoint_path=f"v{number}",
        manifest_path=f"v{number}.json",
        sha256="0" * 64,
        size_bytes=1,
    ).id


def test_a_promotion_decided_against_a_replaced_incumbent_is_refused(home: Path) -> None:
    from selfimprove.errors import IncumbentChangedError

    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    first = _version(store, m.id, VersionStatus.INCUMBENT)
    mine, theirs = (_version(store, m.id, VersionStatus.CANDIDATE) for _ in range(2))
    store.set_incumbent(m.id, theirs, replacing=first)  # another process got there first
    with pytest.raises(IncumbentChangedError, match="changed to v3 meanwhile"):
        store.set_incumbent(m.id, mine, replacing=first)
    assert store.get_model("a").incumbent_version_id == theirs
    statuses = [v.status for v in store.list_versions(m.id)]
    assert statuses == [VersionStatus.BACKUP, VersionStatus.CANDIDATE, VersionStatus.INCUMBENT]
    store.close()


def test_processes_promoting_at_once_leave_exactly_one_incumbent(home: Path) -> None:
    """Each of 4 processes promotes 15 versions of one model, every other one only if the
    incumbent it read is still the incumbent: the model never has two incumbents, and every
    promotion refused as superseded left the incumbent alone."""
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    _version(store, m.id, VersionStatus.INCUMBENT)
    child = (
        "import sys\n"
        "from selfimprove.store import Store, VersionStatus\n"
        "from tests.store.test_store import _version\n"
        "s = Store(home=sys.argv[1])\n"
        "from selfimprove.errors import IncumbentChangedError\n"
        "promoted = 0\n"
        "for i in range(15):\n"
        "    v = _version(s, 1, VersionStatus.CANDIDATE)\n"
        "    judged_against = s.get_model('a').incumbent_version_id\n"
        "    try:\n"
        "        s.set_incumbent(1, v, replacing=judged_against if i % 2 else None)\n"
        "        promoted += 1\n"
        "    except IncumbentChangedError:\n"
        "        s.set_version_status(v, VersionStatus.REJECTED)\n"
        "print(promoted)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(home)],
            cwd=Path(__file__).parents[2],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    promoted = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    versions = store.list_versions(m.id)
    incumbents = [v.id for v in versions if v.status is VersionStatus.INCUMBENT]
    assert len(versions) == 61 and incumbents == [store.get_model("a").incumbent_version_id]
    backups = sum(v.status is VersionStatus.BACKUP for v in versions)
    assert backups == sum(promoted) and backups + (60 - sum(promoted)) == 60
    store.close()


def test_processes_saving_new_state_and_capabilities_at_once_insert_each_once(
    home: Path, tmp_path: Path
) -> None:
    """Found or inserted by key (component state, capabilities, meta-learnings): processes that
    all find a key missing at once insert it once, never fail on the unique key."""
    Store(home=home).close()
    go = tmp_path / "go"
    child = (
        "import os, sys, time\nfrom selfimprove.store import Store\n"
        "s = Store(home=sys.argv[1])\n"
        "print('ready', flush=True)\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.01)\n"
        "for i in range(25):\n"
        "    s.save_state(f'k{i}', {'by': sys.argv[2]})\n"
        "    s.upsert_capability(f'c{i}', type='t', direction='maximize', target=None)\n"
        "    s.upsert_meta_learning('k', f's{i}', statement='x', count=1, successes=1,"
        " confidence=0.5)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(home), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for p in procs:  # every process has opened the store: now all start at once
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e[-500:] for e in errors]
    store = Store(home=home)
    assert all(store.load_state(f"k{i}") is not None for i in range(25))
    assert len(store.list_capabilities()) == 25 and len(store.list_meta_learnings()) == 25
    store.close()


def test_incumbent_metric_reads_one_field_of_every_incumbent(home: Path) -> None:
    from selfimprove.store import VersionStatus

    store = Store(home=home)
    for i, metrics in enumerate(({"parameters": 10.0}, {"parameters": 1e6}, {"other": 1.0})):
        m = store.add_model(f"m{i}", "t", "f")
        store.add_version(
            model_id=m.id,
            number=1,
            parent_id=None,
            status=VersionStatus.INCUMBENT,
            strategy="register",
            origin="test",
            params={},
            metrics=metrics,
            checkpoint_path="",
            manifest_path="",
            sha256="0" * 64,
            size_bytes=0,
        )  # an incumbent: the model's pointer moves with it
    store.add_model("no_incumbent", "t", "f")
    assert store.incumbent_metric("parameters") == [10.0, 1e6]
    assert store.incumbent_metric("missing") == []
    figures = store.incumbent_figures("parameters", task="t")
    assert [(name, value) for _, name, _, value in figures] == [
        ("m0", 10.0),
        ("m1", 1e6),
        ("m2", None),  # an incumbent without the figure; a model without one is not listed
    ]
    assert store.incumbent_figures("parameters", task="other") == []


def test_experiment_summaries_hold_what_meta_learning_reads(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("m", "t", "f")
    a = store.add_experiment(
        model_id=m.id, strategy="prune", cycle=1, params={"budget": {"epochs": 3}, "x": 1}
    )
    stats = {
        "relative_improvement": 0.25,
        "before": 0.9,
        "guards": {"accuracy": {"passed": True, "regression": 0.01, "tolerance": 0.02}},
        "bootstrap": list(range(100)),  # what a summary leaves out
    }
    store.update_experiment(
        a.id,
        status=ExperimentStatus.COMPLETED,
        decision=Decision.PROMOTE,
        statistics=stats,
        compute={"seconds": 1.5, "epochs": 3.0, "other": 2},
        durations={"strategy_s": 1.25},
    )
    store.add_experiment(model_id=m.id, strategy="train", cycle=2)  # nothing recorded yet
    full, _ = store.list_experiments()
    summary, plain = store.list_experiment_summaries()
    assert summary.statistics == {k: v for k, v in stats.items() if k != "bootstrap"}
    assert summary.compute == {"seconds": 1.5, "epochs": 3.0}
    assert summary.durations == {"strategy_s": 1.25}
    assert summary.params == {"budget": {"epochs": 3.0}}
    assert (summary.id, summary.status, summary.decision, summary.reason) == (
        full.id,
        full.status,
        full.decision,
        full.reason,
    )
    assert (plain.statistics, plain.compute, plain.params) == ({}, {}, {})
    assert store.list_experiment_summaries(after_id=a.id) == [plain]
