from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfimprove.errors import TaskError
from selfimprove.objectives import Direction, Objective

ACC = Objective("accuracy", Direction.MAXIMIZE, target=0.95, ideal=1.0)
LAT = Objective("latency_ms", Direction.MINIMIZE, target=2.0, unit="ms")


def test_error_form_is_distance_to_ideal() -> None:
    assert ACC.error(0.9) == pytest.approx(0.1)
    assert LAT.error(10.0) == 10.0


def test_relative_improvement_is_direction_aware() -> None:
    assert ACC.relative_improvement(0.8, 0.9) == pytest.approx(0.5)  # error 0.2 -> 0.1
    assert ACC.relative_improvement(0.9, 0.8) == pytest.approx(-1.0)
    assert LAT.relative_improvement(10.0, 5.0) == pytest.approx(0.5)
    assert LAT.relative_improvement(5.0, 10.0) == pytest.approx(-1.0)


def test_nan_is_never_an_improvement() -> None:
    assert math.isnan(ACC.relative_improvement(0.8, math.nan))
    assert not ACC.meets_target(math.nan)


def test_lower_is_better_gap_counts_a_slow_latency_as_a_gap() -> None:
    # The seed's origin counted 10 s against a 2 s target as "at target".
    assert not LAT.meets_target(10.0)
    assert LAT.gap(10.0) == pytest.approx(4.0)
    assert LAT.gap(1.5) == 0.0
    assert ACC.gap(0.7) == pytest.approx(0.25 / 0.95)


def test_maximized_objective_needs_an_ideal() -> None:
    with pytest.raises(TaskError, match="ideal"):
        Objective("score", Direction.MAXIMIZE)


def test_bad_direction_names_the_value() -> None:
    with pytest.raises(TaskError, match="'upward'"):
        Objective("x", "upward")  # type: ignore[arg-type]


def test_round_trip_through_dict() -> None:
    assert Objective.from_dict(ACC.to_dict()) == ACC


@given(
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_improvement_sign_agrees_with_is_better(a: float, b: float) -> None:
    rel = ACC.relative_improvement(a, b)
    if ACC.is_better(b, a):
        assert rel > 0
    elif ACC.is_better(a, b):
        assert rel < 0
    else:
        assert rel == 0


def test_guard_tolerance_relative_absolute_and_floor() -> None:
    lat = Objective("latency_ms", Direction.MINIMIZE, tolerance=0.25, min_change=0.05)
    assert lat.within_tolerance(0.03, 0.07)  # +133 % but only 0.04 ms
    assert not lat.within_tolerance(1.0, 1.3)  # +30 % and 0.3 ms
    assert lat.within_tolerance(1.0, 1.2)
    acc = Objective(
        "accuracy", Direction.MAXIMIZE, ideal=1.0, tolerance=0.01, absolute_tolerance=True
    )
    assert acc.within_tolerance(0.95, 0.941) and not acc.within_tolerance(0.95, 0.935)
    assert not acc.within_tolerance(0.95, float("nan"))
