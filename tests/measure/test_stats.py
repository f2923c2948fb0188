"""The one statistics module: two-sample and one-sample comparisons, paired tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfimprove.errors import ConfigError
from selfimprove.measure import judge, stats
from selfimprove.objectives import Direction, Objective


def test_the_judge_uses_the_one_paired_test() -> None:
    assert judge.paired_test is stats.paired_test


def test_samples_that_never_vary_need_no_test() -> None:
    better = stats.compare_samples([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], "minimize")
    worse = stats.compare_samples([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], "minimize")
    assert (better.test, better.p_value, better.effect_size) == ("deterministic", 0.0, math.inf)
    assert (worse.p_value, worse.effect_size) == (1.0, -math.inf)
    assert better.relative_improvement == pytest.approx(0.5)


def test_welch_interval_brackets_the_improvement() -> None:
    rng = np.random.default_rng(0)
    base, treat = rng.normal(10, 1, 30), rng.normal(8, 1, 30)
    c = stats.compare_samples(list(base), list(treat), Direction.MINIMIZE)
    assert c.test == "welch_t" and c.p_value < 1e-6
    assert c.ci_low < c.improvement < c.ci_high
    assert c.improvement == pytest.approx(float(np.mean(base) - np.mean(treat)))


def test_mann_whitney_reports_medians_and_a_seeded_interval() -> None:
    base, treat = [5.0, 6.0, 7.0, 8.0, 50.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    a = stats.compare_samples(base, treat, "minimize", test="mann_whitney", seed=1)
    b = stats.compare_samples(base, treat, "minimize", test="mann_whitney", seed=1)
    assert a == b
    assert (a.test, a.statistic, a.baseline_center, a.rank_biserial) == (
        "mann_whitney_u",
        "median",
        7.0,
        pytest.approx(0.96),
    )


def test_a_scalar_baseline_gets_a_one_sample_test() -> None:
    welch = stats.compare_samples(10.0, [12.0, 13.0, 11.0, 12.5], "maximize")
    wilcoxon = stats.compare_samples(
        10.0, [12.0, 13.0, 11.0, 12.5], "maximize", test="mann_whitney"
    )
    assert (welch.test, welch.n_baseline) == ("one_sample_t", 1)
    assert wilcoxon.test == "wilcoxon" and wilcoxon.ci_method == "bootstrap"


def test_bad_input_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="welch"):
        stats.compare_samples([1.0, 2.0], [1.0, 2.0], "minimize", test="t")
    with pytest.raises(ConfigError, match="at least 2 treatment"):
        stats.compare_samples([1.0, 2.0], [1.0], "minimize")
    with pytest.raises(ConfigError, match="finite"):
        stats.compare_samples(math.nan, [1.0, 2.0], "minimize")


def test_paired_test_counts_discordant_pairs_for_accuracy() -> None:
    acc = Objective("accuracy", Direction.MAXIMIZE, ideal=1.0)
    before = np.array([0.0] * 10 + [1.0] * 10)
    after = np.array([1.0] * 20)
    name, p = stats.paired_test(acc, before, after)
    assert name == "mcnemar_exact" and p == pytest.approx(0.5**10)


def test_mann_whitney_is_exact_for_small_samples_even_when_values_tie() -> None:
    # Five after, five before, every after below every before: exactly 2 / C(10, 5) two-sided,
    # whether or not two timings happen to be equal (scipy alone falls back to the normal
    # approximation, 0.0119, on any tie).
    before = [5.0, 6.0, 7.0, 8.0, 9.0]
    assert stats.mann_whitney_p([1.0, 2.0, 3.0, 4.0, 4.5], before, "two-sided") == pytest.approx(
        2 / 252
    )
    assert stats.mann_whitney_p([1.0, 1.0, 2.0, 3.0, 4.0], before, "two-sided") == pytest.approx(
        2 / 252
    )
    assert stats.mann_whitney_p([1.0, 1.0, 2.0, 3.0, 4.0], before, "less") == pytest.approx(1 / 252)
    # A tie across the groups is not a complete separation: larger than the extreme
    assert stats.mann_whitney_p([1.0, 2.0, 3.0, 4.0, 5.0], before, "less") > 1 / 252
    # Large samples use the asymptotic test and still see a clear shift
    rng = np.random.default_rng(0)
    big = rng.normal(size=60)
    assert stats.mann_whitney_p(big - 1.0, big, "less") < 1e-5
