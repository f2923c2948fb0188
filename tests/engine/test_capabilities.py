"""Capabilities and weaknesses: direction-aware gaps, lifecycle, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfimprove.engine import SelfImprovementEngine
from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.store import Store, WeaknessStatus


def test_latency_of_10s_against_2s_target_is_critical_and_1s_is_at_target(
    engine: SelfImprovementEngine,
) -> None:
    engine.register_capability(
        "response_time",
        "performance",
        "seconds per answer",
        target=2.0,
        unit="s",
        direction="minimize",
    )
    slow = engine.measure_capability("response_time", 10.0)
    assert slow.gap == pytest.approx(4.0)  # (10 - 2) / 2
    assert slow.level == "critical"
    [weak] = engine.analyze_weaknesses()
    assert (weak.severity, weak.impact, weak.type) == ("critical", 0.9, "efficiency")
    assert weak.status is WeaknessStatus.OPEN

    fast = engine.measure_capability("response_time", 1.0)
    assert fast.level == "at_target" and fast.gap == 0.0
    assert engine.analyze_weaknesses() == []  # resolved by the measurement
    resolved = engine.store.get_weakness(weak.id)
    assert resolved.status is WeaknessStatus.RESOLVED
    assert "meets the target" in resolved.resolution
    # evidence kept: the 10 s observation and the 1 s one that resolved it
    values = [o["value"] for o in resolved.evidence["observations"]]
    assert values == [10.0, 1.0]


def test_accuracy_of_04_against_09_is_critical(engine: SelfImprovementEngine) -> None:
    engine.register_capability("accuracy", "quality", target=0.9, direction="maximize")
    p = engine.measure_capability("accuracy", 0.4)
    assert p.gap == pytest.approx(0.5 / 0.9)
    assert p.level == "critical"
    [weak] = engine.analyze_weaknesses()
    assert weak.type == "capability_gap" and weak.severity == "critical"


@pytest.mark.parametrize(
    ("value", "level", "impact"),
    [(0.85, "low", 0.3), (0.7, "medium", 0.5), (0.6, "high", 0.7), (0.44, "critical", 0.9)],
)
def test_severity_levels_follow_the_seed(
    engine: SelfImprovementEngine, value: float, level: str, impact: float
) -> None:
    # target 0.9: gaps 5.6 %, 22 %, 33 %, 51 %
    engine.register_capability("acc", "quality", target=0.9, direction="maximize")
    engine.measure_capability("acc", value)
    [weak] = engine.analyze_weaknesses()
    assert (weak.severity, weak.impact) == (level, impact)


def test_direction_is_read_from_baseline_and_target_or_required(
    engine: SelfImprovementEngine,
) -> None:
    lat = engine.register_capability("lat", "perf", baseline=12.0, target=2.0, unit="s")
    acc = engine.register_capability("acc", "quality", baseline=0.3, target=0.9)
    assert (lat.direction, acc.direction) == ("minimize", "maximize")
    with pytest.raises(ConfigError, match="direction='minimize'"):
        engine.register_capability("mystery", "perf", target=5.0)
    # re-registering without a direction keeps the known one
    assert engine.register_capability("lat", "perf", target=1.5).direction == "minimize"


def test_registering_again_keeps_measurements_and_baseline(engine: SelfImprovementEngine) -> None:
    engine.register_capability("lat", "perf", "old", baseline=12.0, target=2.0, unit="s")
    engine.measure_capability("lat", 10.0)
    engine.measure_capability("lat", 8.0)
    again = engine.register_capability("lat", "perf", "new text", baseline=99.0, target=3.0)
    assert again.description == "new text" and again.target == 3.0
    assert again.baseline == 12.0  # the first baseline stays
    profile = engine.get_capability_profile("lat")
    assert profile.measurements == 2 and profile.current == 8.0
    assert profile.improvement == pytest.approx((12 - 8) / 12)  # lower is better: +33 %


def test_a_new_engine_on_the_same_database_keeps_every_id(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    first = SelfImprovementEngine(db)
    cap = first.register_capability("lat", "perf", target=2.0, unit="s", direction="minimize")
    first.measure_capability("lat", 10.0)
    first.measure_capability("lat", 9.0)
    manual = first.identify_weakness("flaky io", "reliability", "high", "timeouts in 3 % of runs")
    auto = first.analyze_weaknesses()
    measurements = [m.id for m in first.store.list_measurements(cap.id)]
    first.close()

    second = SelfImprovementEngine(f"sqlite:///{db}")  # the URL form of the same file
    assert [c.id for c in second.store.list_capabilities()] == [cap.id]
    assert [m.id for m in second.store.list_measurements(cap.id)] == measurements
    assert [m.value for m in second.store.list_measurements(cap.id)] == [10.0, 9.0]
    again = second.analyze_weaknesses()
    assert sorted(w.id for w in again) == sorted(w.id for w in auto)
    assert manual.id in {w.id for w in again}
    # the auto weakness was updated, not duplicated, and its evidence kept both values
    [auto_w] = [w for w in again if w.source == "auto"]
    assert [o["value"] for o in auto_w.evidence["observations"]] == [10.0, 9.0]
    second.close()


def test_weakness_lifecycle_is_enforced(engine: SelfImprovementEngine) -> None:
    w = engine.identify_weakness("slow export", "efficiency", "medium", "export takes 40 s")
    assert (w.impact, w.priority) == (0.5, 0.25)  # medium: impact 0.5, weight 0.5
    assert engine.set_weakness_status(w.id, "in_progress").status is WeaknessStatus.IN_PROGRESS
    done = engine.set_weakness_status(w.id, "wont_fix", "export is rare")
    assert done.status is WeaknessStatus.WONT_FIX and done.resolution == "export is rare"
    with pytest.raises(ConfigError, match="cannot become open"):
        engine.set_weakness_status(w.id, "open")
    with pytest.raises(ConfigError, match="weakness type must be one of"):
        engine.identify_weakness("x", "vibes", "low", "?")
    with pytest.raises(NotFoundError, match="register it first"):
        engine.measure_capability("nope", 1.0)


def test_analyze_sorts_by_priority_and_filters_by_impact(engine: SelfImprovementEngine) -> None:
    low = engine.identify_weakness("a", "reliability", "low", "rare retry")
    crit = engine.identify_weakness("b", "efficiency", "critical", "10x too slow")
    high = engine.identify_weakness("c", "output_quality", "high", "typos")
    assert [w.id for w in engine.analyze_weaknesses()] == [crit.id, high.id, low.id]
    assert [w.id for w in engine.analyze_weaknesses(min_impact=0.7)] == [crit.id, high.id]


@pytest.mark.usefixtures("store_url")
def test_neural_capabilities_appear_with_validation_values_never_test(home: Path) -> None:
    # What the registry and the loop write for a model objective, through the store itself.
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
    store.add_measurements(
        cap.id, {"validation": 0.62, "test": 0.99}, context={"role": "incumbent"}
    )
    store.close()

    with SelfImprovementEngine(home=home) as engine:
        [profile] = engine.profile_all_capabilities()
        assert profile.name == "digits/accuracy" and profile.model_id == model.id
        assert profile.current == 0.62  # validation decides; test is only reported
        assert profile.level == "high"  # gap (0.95 - 0.62) / 0.95 = 34.7 %
        [weak] = engine.analyze_weaknesses()
        assert weak.capability_id == cap.id and weak.severity == "high"
