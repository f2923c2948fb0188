from __future__ import annotations

import numpy as np
import pytest

from selfimprove.errors import ConfigError
from selfimprove.meta.bandit import StrategyBandit

CTX = ("capability_gap", "image_classification")
ARMS = ["train", "tune", "retrain"]


def _simulate(bandit: StrategyBandit, rounds: int, means: dict[str, float]) -> list[str]:
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(rounds):
        arm, _ = bandit.choose(CTX, ARMS)
        picks.append(arm)
        bandit.update(CTX, arm, means[arm] + 0.01 * rng.standard_normal())
    return picks


def test_choices_concentrate_on_the_dominant_strategy() -> None:
    picks = _simulate(StrategyBandit(seed=1), 60, {"train": 0.01, "tune": 0.08, "retrain": 0.0})
    assert picks[-20:].count("tune") >= 17
    assert set(picks[:15]) != {"tune"}  # it did explore


def test_same_seed_same_choices() -> None:
    means = {"train": 0.02, "tune": 0.03, "retrain": 0.01}
    assert _simulate(StrategyBandit(seed=3), 30, means) == _simulate(
        StrategyBandit(seed=3), 30, means
    )


def test_contexts_are_independent_and_estimates_reported() -> None:
    b = StrategyBandit()
    b.update(CTX, "tune", 0.1)
    b.update(("efficiency", "x"), "prune", 0.2)
    assert set(b.estimates(CTX)) == {"tune"}
    assert b.estimates(CTX)["tune"]["n"] == 1
    assert 0 < b.estimates(CTX)["tune"]["mean"] < 0.1  # shrunk toward the prior mean 0


def test_round_trip_preserves_future_draws() -> None:
    b = StrategyBandit(seed=7)
    _simulate(b, 10, {"train": 0.01, "tune": 0.02, "retrain": 0.03})
    again = StrategyBandit.from_dict(b.to_dict())
    assert again.choose(CTX, ARMS) == b.choose(CTX, ARMS)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least one strategy"):
        StrategyBandit().choose(CTX, [])
    with pytest.raises(ConfigError, match="weakness kind, family"):
        StrategyBandit().update(("a",), "train", 1.0)


def test_expected_reward_falls_back_to_other_contexts() -> None:
    b = StrategyBandit()
    for _ in range(5):
        b.update(("capability_gap", "tabular"), "tune", 0.2)
    unseen = b.expected(("capability_gap", "images"), "tune")
    assert unseen == pytest.approx(b.expected(("capability_gap", "tabular"), "tune"))
    assert unseen > 0.1
    assert b.expected(CTX, "never_tried") == 0.0


def test_merge_equals_one_pass() -> None:
    from selfimprove.meta.bandit import ArmPosterior

    xs, ys = [0.1, 0.4, 0.2], [0.5, 0.0]
    a, b, both = ArmPosterior(), ArmPosterior(), ArmPosterior()
    for x in xs:
        a, both = a.add(x), both.add(x)
    for y in ys:
        b, both = b.add(y), both.add(y)
    m = a.merge(b)
    assert m.n == both.n and m.mean == pytest.approx(both.mean) and m.m2 == pytest.approx(both.m2)


def test_choose_many_draws_like_choose_and_replays() -> None:
    arms = ["train", "retrain", "tune"]
    a, b, c = StrategyBandit(seed=3), StrategyBandit(seed=3), StrategyBandit(seed=3)
    for bandit in (a, b, c):
        for r in (0.10, 0.12, 0.08, 0.11):
            bandit.update(("training", "tabular"), "retrain", r)
        for r in (0.0, 0.01, 0.0):
            bandit.update(("training", "tabular"), "train", r)
    many = a.choose_many(("training", "tabular"), arms, 3000)
    assert many == b.choose_many(("training", "tabular"), arms, 3000)  # same seed, same draws
    one_by_one = [c.choose(("training", "tabular"), arms)[0] for _ in range(3000)]
    for arm in arms:  # the same Thompson distribution as one draw at a time
        assert abs(many.count(arm) - one_by_one.count(arm)) / 3000 < 0.04, arm
    assert many.count("retrain") > 0.6 * 3000  # the arm that pays is chosen most
    assert a.choose_many(("training", "tabular"), arms, 0) == []
    with pytest.raises(ConfigError):
        a.choose_many(("training", "tabular"), [], 2)
