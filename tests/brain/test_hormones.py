from __future__ import annotations

import pytest

from selfimprove.brain.hormones import HormoneEvent, HormoneSystemController
from selfimprove.errors import ConfigError


def test_levels_start_at_baselines_and_stay_in_unit_interval() -> None:
    h = HormoneSystemController()
    assert h.get_hormone_levels() == {
        "dopamine": 0.5,
        "serotonin": 0.5,
        "cortisol": 0.3,
        "adrenaline": 0.2,
    }
    h.release("dopamine", 5.0)
    h.release("cortisol", -5.0)
    assert h.level("dopamine") == 1.0 and h.level("cortisol") == 0.0


def test_decay_halves_the_distance_per_half_life() -> None:
    h = HormoneSystemController()
    h.set_level("dopamine", 0.9)  # 0.4 above its 0.5 baseline, half-life 3 cycles
    h.tick(3)
    assert h.level("dopamine") == pytest.approx(0.7)
    h.tick(300)
    assert h.level("dopamine") == pytest.approx(0.5)


def test_events_move_the_right_hormones() -> None:
    h = HormoneSystemController()
    h.on_event(HormoneEvent.PROMOTION, gain=0.3)
    assert h.level("dopamine") == pytest.approx(0.8)
    h.on_event("failure")
    assert h.level("cortisol") == pytest.approx(0.45)
    h.on_event("latency_missed")
    assert h.level("adrenaline") == pytest.approx(0.3)
    for _ in range(3):
        h.on_event("promotion", gain=0.0)
    assert h.level("serotonin") == pytest.approx(0.6)  # steady success


def test_seed_priority_rule() -> None:
    h = HormoneSystemController()
    assert h.priority_multiplier() == 1.0
    h.set_level("dopamine", 0.71)
    assert h.priority_multiplier() == pytest.approx(1.5)
    h.set_level("cortisol", 0.61)
    assert h.priority_multiplier() == pytest.approx(1.95)


def test_stress_widens_exploration_and_shrinks_budget() -> None:
    calm, stressed = HormoneSystemController(), HormoneSystemController()
    stressed.set_level("cortisol", 0.9)
    assert stressed.exploration() > calm.exploration()
    assert stressed.budget_multiplier() < calm.budget_multiplier()


def test_round_trip_and_bad_names() -> None:
    h = HormoneSystemController()
    h.on_event("promotion", gain=0.2)
    again = HormoneSystemController.from_dict(h.to_dict())
    assert again.get_hormone_levels() == h.get_hormone_levels()
    with pytest.raises(ConfigError, match="unknown hormone 'oxytocin'"):
        h.release("oxytocin", 0.1)
    with pytest.raises(ValueError):
        h.on_event("party")


def test_priority_multiplier_by_kind() -> None:
    h = HormoneSystemController()
    h.set_level("dopamine", 0.8)
    h.set_level("cortisol", 0.8)
    assert h.priority_multiplier("training") == pytest.approx(1.5)
    assert h.priority_multiplier("optimisation") == pytest.approx(1.3)
