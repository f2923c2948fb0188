"""The engine's composition: one store per process, one weakness vocabulary with the planner."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfimprove.brain.planning import Severity, Weakness, WeaknessType, severity_level
from selfimprove.engine import SelfImprovementEngine, record_fields, same_weakness
from selfimprove.store import Store


@pytest.mark.usefixtures("store_url")
def test_an_engine_given_a_store_uses_it_and_leaves_it_open(home: Path) -> None:
    store = Store(home=home)
    try:
        engine = SelfImprovementEngine(store=store)
        assert engine.store is store
        assert all(
            part.store is store
            for part in (engine.capabilities, engine.weaknesses, engine.experiments, engine.code)
        )
        engine.register_capability("latency", "efficiency", target=1.0, direction="minimize")
        engine.close()
        # the store is still usable after the engine is closed
        assert [c.name for c in store.list_capabilities()] == ["latency"]
        with SelfImprovementEngine(store=store) as again:
            assert again.get_capability_profile("latency").name == "latency"
        assert store.get_capability("latency").direction == "minimize"
    finally:
        store.close()


def test_settings_set_on_the_facade_reach_its_parts(home: Path, tmp_path: Path) -> None:
    with SelfImprovementEngine(home=home) as engine:
        engine.improvement_threshold = 0.3
        engine.root = tmp_path
        engine.check_timeout_s = 5.0
        engine.actor = "carol"
        assert engine.experiments.improvement_threshold == 0.3
        assert engine.code.check.root == tmp_path and engine.code.check.timeout_s == 5.0
        assert engine.weaknesses.actor() == "carol"


@pytest.mark.parametrize(
    ("gap", "level", "impact"),
    [
        (0.6, "critical", 0.9),
        (0.5, "high", 0.7),
        (0.31, "high", 0.7),
        (0.25, "medium", 0.5),
        (0.2, "low", 0.3),
        (0.0, "low", 0.3),
    ],
)
def test_one_severity_rule_for_planner_and_engine(gap: float, level: str, impact: float) -> None:
    assert severity_level(gap) == (level, impact)
    w = Weakness("m", "training", "accuracy", gap, "short")
    assert (w.severity, w.impact) == (Severity(level), impact)


@pytest.mark.usefixtures("store_url")
def test_a_planner_weakness_is_stored_as_the_same_weakness(home: Path) -> None:
    with SelfImprovementEngine(home=home) as engine:
        cap = engine.register_capability(
            "digits/latency_ms", "efficiency", target=10.0, direction="minimize"
        )
        planned = Weakness("digits", "optimisation", "latency_ms", 0.4, "latency 14 ms > 10 ms")
        stored = engine.store.add_weakness(**record_fields(planned, cap))
        assert (stored.type, stored.severity, stored.capability_id) == (
            WeaknessType.EFFICIENCY.value,
            "high",
            cap.id,
        )
        same, why = same_weakness(stored, planned)
        assert same, why
        worse = Weakness("digits", "optimisation", "latency_ms", 0.8, "latency 18 ms > 10 ms")
        same, why = same_weakness(stored, worse)
        assert not same and why == "severity high vs critical"
        # the engine's own ranking sees it like any other weakness
        assert stored.id in {w.id for w in engine.analyze_weaknesses()}
