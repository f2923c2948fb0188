"""The per-cycle weakness scan: a few statements whatever the number of capabilities, and a
weakness that did not change is not written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from selfimprove.engine import SelfImprovementEngine
from selfimprove.store import MeasurementSet, Store, WeaknessStatus


@contextmanager
def _counting(store: Store) -> Iterator[dict[str, Any]]:
    """Count the SQL statements (an executemany is one) and commits on ``store``."""
    seen: dict[str, Any] = {"statements": [], "commits": 0}

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen["statements"].append(statement)

    def on_commit(_conn: Any) -> None:
        seen["commits"] += 1

    event.listen(store.engine, "before_cursor_execute", on_statement)
    event.listen(store.engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", on_statement)
        event.remove(store.engine, "commit", on_commit)


def _neural_models(home: Path, n: int) -> list[int]:
    """``n`` models as the neural system registers them: accuracy (target 0.95) and latency
    (no target) capabilities; returns the accuracy capabilities' ids."""
    store = Store(home=home)
    ids = []
    with store.batch():
        for i in range(n):
            model = store.add_model(f"m{i:03d}", "pattern_recognition", "classification")
            ids.append(
                store.upsert_capability(
                    f"m{i:03d}/accuracy",
                    type="model_objective",
                    direction="maximize",
                    target=0.95,
                    model_id=model.id,
                    objective="accuracy",
                ).id
            )
            store.upsert_capability(
                f"m{i:03d}/latency_ms",
                type="model_objective",
                direction="minimize",
                target=None,
                unit="ms",
                model_id=model.id,
                objective="latency_ms",
            )
    store.close()
    return ids


def _observe(store: Store, cap_ids: list[int], accuracy: float) -> None:
    """One cycle's observation of every incumbent (validation decides; test is reported)."""
    store.add_measurement_sets(
        [MeasurementSet(c, {"validation": accuracy, "test": accuracy + 0.01}) for c in cap_ids]
    )


def _scan_costs(home: Path, n: int) -> dict[str, Any]:
    caps = _neural_models(home, n)
    with SelfImprovementEngine(home=home) as engine:
        _observe(engine.store, caps, 0.6)
        with _counting(engine.store) as first:
            opened = engine.analyze_weaknesses()
        _observe(engine.store, caps, 0.7)  # every weakness changes
        with _counting(engine.store) as changed:
            updated = engine.analyze_weaknesses()
        _observe(engine.store, caps, 0.7)  # measured again, nothing new
        with _counting(engine.store) as same:
            kept = engine.analyze_weaknesses()
        _observe(engine.store, caps, 0.96)  # every target met
        with _counting(engine.store) as met:
            left = engine.analyze_weaknesses()
        resolved = engine.store.list_weaknesses(statuses=(WeaknessStatus.RESOLVED,))
    assert len(opened) == len(updated) == len(kept) == n
    assert {w.severity for w in opened} == {"high"} and {w.severity for w in kept} == {"medium"}
    assert left == [] and len(resolved) == n
    return {"first": first, "changed": changed, "same": same, "met": met}


def test_the_scan_costs_the_same_statements_at_10_and_200_capabilities(tmp_path: Path) -> None:
    small = _scan_costs(tmp_path / "small", 10)
    large = _scan_costs(tmp_path / "large", 200)
    for phase in ("changed", "same", "met"):
        assert len(large[phase]["statements"]) == len(small[phase]["statements"]), phase
        assert len(large[phase]["statements"]) <= 10, (phase, large[phase]["statements"])
    # Opening: one transaction for every new weakness (SQLite cannot batch an INSERT whose
    # generated ids must come back in order, so its inserts are one a row, within it).
    for phase in ("first", "changed", "met"):
        assert small[phase]["commits"] == large[phase]["commits"] == 1, phase
    assert large["same"]["commits"] == 0  # reads only


@pytest.mark.usefixtures("store_url")
def test_an_unchanged_weakness_is_not_rewritten(home: Path) -> None:
    [cap] = _neural_models(home, 1)
    with SelfImprovementEngine(home=home) as engine:
        _observe(engine.store, [cap], 0.6)
        [opened] = engine.analyze_weaknesses()
        for _ in range(3):  # the neural system observes every incumbent each cycle
            _observe(engine.store, [cap], 0.6)
            with _counting(engine.store) as seen:
                [again] = engine.analyze_weaknesses()
            # reads only: SELECTs, each read transaction's plain BEGIN (no BEGIN IMMEDIATE)
            writes = [s for s in seen["statements"] if s.split()[0] not in ("SELECT", "BEGIN")]
            assert not writes and "BEGIN IMMEDIATE" not in seen["statements"]
            assert again == opened  # updated_at and evidence included
        _observe(engine.store, [cap], 0.7)
        [moved] = engine.analyze_weaknesses()
        assert moved.updated_at >= opened.updated_at and moved.gap != opened.gap
        values = [o["value"] for o in moved.evidence["observations"]]
        assert values == [0.6, 0.7]  # one observation per change, not one per cycle


def test_measuring_the_same_value_again_keeps_one_observation(
    engine: SelfImprovementEngine,
) -> None:
    engine.register_capability("lat", "perf", target=2.0, unit="s", direction="minimize")
    engine.measure_capability("lat", 10.0)
    [first] = engine.analyze_weaknesses()
    engine.measure_capability("lat", 10.0)
    [same] = engine.analyze_weaknesses()
    assert same == first
    engine.measure_capability("lat", 8.0)
    [moved] = engine.analyze_weaknesses()
    assert [o["value"] for o in moved.evidence["observations"]] == [10.0, 8.0]
    assert moved.gap == pytest.approx(3.0)


@pytest.mark.usefixtures("store_url")
def test_the_scan_resolves_opens_and_leaves_alone_in_one_pass(home: Path) -> None:
    store = Store(home=home)
    model = store.add_model("digits", "pattern_recognition", "classification")

    def cap(name: str, direction: str, target: float | None, unit: str = "") -> int:
        return store.upsert_capability(
            name,
            type="model_objective",
            direction=direction,
            target=target,
            unit=unit,
            model_id=model.id,
            objective=name,
        ).id

    met, short, slow, untargeted, test_only, unmeasured = (
        cap("met", "maximize", 0.9),
        cap("short", "maximize", 0.9),
        cap("slow", "minimize", 2.0, "s"),
        cap("untargeted", "maximize", None),
        cap("test_only", "maximize", 0.9),
        cap("unmeasured", "maximize", 0.9),
    )
    store.add_measurement_sets(
        [
            MeasurementSet(met, {"validation": 0.5}),
            MeasurementSet(short, {"validation": 0.85}),
            MeasurementSet(slow, {"global": 10.0}),
            MeasurementSet(untargeted, {"validation": 0.1}),
        ]
    )
    store.close()
    with SelfImprovementEngine(home=home) as engine:
        first = {w.capability_id: w for w in engine.analyze_weaknesses()}
        assert set(first) == {met, short, slow}  # not untargeted, test_only, unmeasured
        assert unmeasured not in engine.store.latest_measurements()
        assert (first[short].severity, first[slow].severity) == ("low", "critical")
        assert first[slow].type == "efficiency" and first[slow].gap == pytest.approx(4.0)
        manual = engine.identify_weakness(
            "met is flaky", "reliability", "low", "varies by seed", capability="met"
        )
        engine.store.add_measurement_sets(
            [
                MeasurementSet(met, {"validation": 0.95, "test": 0.2}),  # test never decides
                MeasurementSet(test_only, {"test": 0.1}),  # a split that never decides
            ]
        )
        after = {w.capability_id: w for w in engine.analyze_weaknesses()}
        assert set(after) == {short, slow}
        assert after[short] == first[short] and after[slow] == first[slow]  # not rewritten
        for w in (first[met], manual):
            done = engine.store.get_weakness(w.id)
            assert done.status is WeaknessStatus.RESOLVED and "meets the target" in done.resolution
        events = engine.store.list_events()
        assert {e.payload["weakness_id"] for e in events if e.kind == "weakness_resolved"} == {
            first[met].id,
            manual.id,
        }
        opened = [e for e in events if e.kind == "weakness_opened"]
        assert {e.payload["weakness_id"] for e in opened} == {w.id for w in first.values()} | {
            manual.id
        }
        assert {e.model_id for e in opened if e.payload["weakness_id"] != manual.id} == {model.id}
        profiles = {p.name: p for p in engine.profile_all_capabilities()}
        assert profiles["met"].current == 0.95 and profiles["met"].measurements == 3
        assert (
            profiles["test_only"].level == "unmeasured" and profiles["unmeasured"].measurements == 0
        )
        assert profiles["untargeted"].level == "no_target"


def test_a_word_unit_is_spaced_from_its_number_and_percent_is_not(
    engine: SelfImprovementEngine,
) -> None:
    engine.register_capability("acc", "quality", target=0.97, unit="points", direction="maximize")
    engine.register_capability("hit", "quality", target=90.0, unit="%", direction="maximize")
    engine.measure_capability("acc", 0.5)
    engine.measure_capability("hit", 50.0)
    found = {w.description.split(" is ")[0]: w for w in engine.analyze_weaknesses()}
    assert "is 0.5 points against a target of 0.97 points" in found["acc"].description
    assert "is 50% against a target of 90% " in found["hit"].description
    engine.measure_capability("acc", 0.98)
    engine.analyze_weaknesses()
    [done] = [w for w in engine.store.list_weaknesses() if w.status is WeaknessStatus.RESOLVED]
    assert "0.98 points meets the target 0.97 points" in done.resolution
