"""Experiments: templates, the bandit, test_approach's statistics, measure_improvement."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from selfimprove.engine import (
    BANDIT_STATE_KEY,
    TEMPLATES,
    SelfImprovementEngine,
    WeaknessType,
    compare_samples,
)
from selfimprove.errors import ConfigError
from selfimprove.store import Decision, ExperimentStatus, WeaknessStatus


def _fib(n: int) -> int:
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


@functools.cache
def _fib_cached(n: int) -> int:
    return n if n < 2 else _fib_cached(n - 1) + _fib_cached(n - 2)


def _efficiency_weakness(engine: SelfImprovementEngine) -> int:
    engine.register_capability(
        "fib_time", "performance", target=0.0001, unit="s", direction="minimize"
    )
    engine.measure_capability("fib_time", 0.002)
    [w] = engine.analyze_weaknesses()
    return w.id


def test_generated_experiments_follow_the_seed_templates_with_labelled_priors(
    engine: SelfImprovementEngine,
) -> None:
    wid = _efficiency_weakness(engine)
    planned = engine.generate_experiments(wid, 3)
    names = {e.strategy for e in planned}
    assert names == {"caching", "query_optimization", "resource_pooling"}
    priors = {t.name: t.prior_improvement for t in TEMPLATES[WeaknessType.EFFICIENCY]}
    for e in planned:
        assert e.status is ExperimentStatus.PLANNED and e.weakness_id == wid
        assert e.expected_improvement == priors[e.strategy]
        assert e.params["expected_source"] == "prior" and "(prior)" in e.hypothesis
        assert e.params["methodology"] and "fib_time" in e.hypothesis
    assert engine.store.get_weakness(wid).status is WeaknessStatus.IN_PROGRESS
    # the bandit that ordered them is saved in the shared state table, and its draw counter
    # moved, so the next ordering is a fresh Thompson draw (replayable from the seed)
    state = engine.store.load_state(BANDIT_STATE_KEY)
    assert state is not None and state["draws"] == [[["efficiency", "engine"], 1]]
    with pytest.raises(ConfigError, match="num_experiments must be >= 1"):
        engine.generate_experiments(wid, 0)


def test_cached_function_is_a_significant_speed_up(engine: SelfImprovementEngine) -> None:
    wid = _efficiency_weakness(engine)
    [exp] = [e for e in engine.generate_experiments(wid, 3) if e.strategy == "caching"]
    result = engine.test_approach(exp.id, lambda: _fib_cached(20), lambda: _fib(20), repeats=25)
    assert result.status == "completed" and result.test == "mann_whitney_u"
    assert result.success and result.significant
    assert result.p_value is not None and result.p_value < 1e-6
    assert result.relative_improvement is not None and result.relative_improvement > 0.9
    assert result.ci is not None and result.ci[0] > 0.15  # the whole interval beats 15 %
    # positive: faster (Cohen's d on means; a preempted cached call can shrink it, not flip it)
    assert result.effect_size is not None and result.effect_size > 0
    stored = engine.store.get_experiment(exp.id)
    assert stored.status is ExperimentStatus.COMPLETED and stored.decision is Decision.PROMOTE
    assert len(stored.statistics["samples"]["baseline"]) == 25
    assert stored.statistics["interleaved"] is True
    print(  # the figures, for the report (pytest -s)
        f"cached fib(20): speed-up {result.relative_improvement:.4f}, p={result.p_value:.3g}, "
        f"CI {result.ci}"
    )


def test_a_no_op_change_is_not_a_success(engine: SelfImprovementEngine) -> None:
    wid = _efficiency_weakness(engine)
    a, b, _ = engine.generate_experiments(wid, 3)

    def work() -> int:
        return sum(range(20_000))

    timed = engine.test_approach(a.id, work, work, repeats=30)
    assert not timed.success
    # interleaved medians of the same work: a small difference (loose bound: a shared machine)
    assert timed.relative_improvement is not None and abs(timed.relative_improvement) < 0.5

    # The same no-op on values: both sides draw from one seeded generator (interleaved), so
    # the outcome is fixed, and the test must not call it significant.
    rng = np.random.default_rng(7)

    def noisy() -> float:
        return float(rng.normal(10.0, 1.0))

    valued = engine.test_approach(
        b.id, noisy, noisy, repeats=30, measure="value", direction="minimize"
    )
    assert valued.test == "welch_t" and not valued.significant and not valued.success
    assert valued.p_value is not None and valued.p_value > 0.05
    assert engine.store.get_experiment(b.id).decision is Decision.REJECT


def test_an_exception_is_a_failed_run_with_its_error(engine: SelfImprovementEngine) -> None:
    wid = _efficiency_weakness(engine)
    exp = engine.generate_experiments(wid, 1)[0]
    calls = []

    def broken() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("cache backend unreachable")

    result = engine.test_approach(exp.id, broken, lambda: None, repeats=10)
    assert result.status == "failed" and not result.success
    assert result.error == "RuntimeError: cache backend unreachable"
    stored = engine.store.get_experiment(exp.id)
    assert stored.status is ExperimentStatus.FAILED
    assert "RuntimeError: cache backend unreachable" in stored.reason
    assert stored.statistics["failed_side"] == "approach"
    with pytest.raises(ConfigError, match="is failed; only a planned experiment"):
        engine.test_approach(exp.id, lambda: None, lambda: None)
    fm = engine.get_meta_learnings(type="failure_modes")
    assert [m.subject for m in fm] == [f"{exp.strategy}|RuntimeError"]


def test_value_measure_against_a_baseline_value_uses_the_capability_direction(
    engine: SelfImprovementEngine,
) -> None:
    engine.register_capability("acc", "quality", target=0.9, direction="maximize")
    engine.measure_capability("acc", 0.5)
    [w] = engine.analyze_weaknesses()
    exp = engine.generate_experiments(w.id, 1)[0]
    rng = np.random.default_rng(3)
    result = engine.test_approach(
        exp.id,
        lambda: float(rng.normal(0.7, 0.02)),
        baseline_value=0.5,
        repeats=12,
        measure="value",
    )
    assert result.test == "one_sample_t" and result.success
    assert result.relative_improvement == pytest.approx(
        (np.mean(engine.store.get_experiment(exp.id).statistics["samples"]["approach"]) - 0.5) / 0.5
    )


def test_expected_improvement_comes_from_history_once_there_is_one(
    engine: SelfImprovementEngine,
) -> None:
    wid = _efficiency_weakness(engine)
    caching = next(e for e in engine.generate_experiments(wid, 3) if e.strategy == "caching")
    result = engine.test_approach(
        caching.id,
        lambda: 5.0,
        baseline_value=10.0,
        repeats=5,
        measure="value",
        direction="minimize",
    )
    assert result.test == "deterministic" and result.p_value == 0.0
    assert result.relative_improvement == pytest.approx(0.5)
    again = next(e for e in engine.generate_experiments(wid, 3) if e.strategy == "caching")
    assert again.expected_improvement == pytest.approx(0.5)
    assert again.params["expected_source"] == "meta_learning (n=1)"


def test_measure_improvement_is_direction_aware_with_seed_confidence(
    engine: SelfImprovementEngine,
) -> None:
    lat = engine.measure_improvement(10.0, 4.0, "latency_s", direction="minimize")
    assert (lat.absolute_change, lat.relative_change, lat.percent_change) == pytest.approx(
        (-6.0, -0.6, -60.0)
    )
    assert lat.improvement == pytest.approx(0.6) and lat.confidence == "high"
    assert lat.test == "threshold" and lat.significant
    acc = engine.measure_improvement(0.80, 0.88, "acc", direction="maximize")
    assert acc.improvement == pytest.approx(0.1) and acc.confidence == "low"
    assert not acc.significant  # 10 % < the 15 % threshold, no samples to say more
    worse = engine.measure_improvement(2.0, 2.5, "latency_s", direction="minimize")
    assert worse.improvement == pytest.approx(-0.25) and worse.confidence == "medium"

    rng = np.random.default_rng(0)
    before, after = rng.normal(10, 0.5, 20), rng.normal(7, 0.5, 20)
    sampled = engine.measure_improvement(
        float(before.mean()),
        float(after.mean()),
        "latency_s",
        before_samples=before.tolist(),
        after_samples=after.tolist(),
        direction="minimize",
    )
    assert sampled.test == "welch_t" and sampled.significant and sampled.p_value < 1e-6
    assert sampled.confidence == "medium"  # a 30 % gain
    same = rng.normal(10, 0.5, 40)
    noise = engine.measure_improvement(
        float(same[:20].mean()),
        float(same[20:].mean()),
        "latency_s",
        before_samples=same[:20].tolist(),
        after_samples=same[20:].tolist(),
        direction="minimize",
    )
    assert not noise.significant and noise.confidence == "low"
    series = engine.store.list_improvement_measurements("latency_s")
    assert [m.id for m in series] == [lat.id, worse.id, sampled.id, noise.id]
    with pytest.raises(ConfigError, match="direction is unknown"):
        engine.measure_improvement(1.0, 2.0, "unknown_metric")


def test_compare_samples_welch_interval_and_effect_size() -> None:
    base = [10.0, 11.0, 9.0, 10.5, 9.5]
    treat = [8.0, 8.5, 7.5, 8.2, 7.8]
    cmp = compare_samples(base, treat, "minimize", test="welch")
    from scipy import stats

    expected_p = stats.ttest_ind(treat, base, equal_var=False, alternative="less").pvalue
    assert cmp.p_value == pytest.approx(expected_p)
    assert cmp.improvement == pytest.approx(np.mean(base) - np.mean(treat))
    assert cmp.ci_low < cmp.improvement < cmp.ci_high and cmp.ci_low > 0
    pooled = math.sqrt((np.var(base, ddof=1) + np.var(treat, ddof=1)) / 2)
    assert cmp.effect_size == pytest.approx((np.mean(base) - np.mean(treat)) / pooled)
    # the same data read as "higher is better" is a regression, not significant
    assert compare_samples(base, treat, "maximize", test="welch").p_value > 0.99
