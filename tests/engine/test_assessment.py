"""Self-assessment: the seed's formula and grade, on real experiment records."""

from __future__ import annotations

import pytest
import torch

from selfimprove.engine import SelfImprovementEngine, grade_for, learning_quality
from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.store import Decision, ExperimentStatus, WeaknessStatus
from selfimprove.strategies import Budget
from tests.conftest import wine_task


def _run(engine: SelfImprovementEngine, exp_id: int, after: float | None) -> None:
    def approach() -> float:
        if after is None:
            raise ConnectionError("pool exhausted")
        return after

    engine.test_approach(
        exp_id, approach, baseline_value=10.0, repeats=4, measure="value", direction="minimize"
    )


def test_grade_follows_the_formula_on_real_experiment_records(
    engine: SelfImprovementEngine,
) -> None:
    engine.register_capability("lat", "performance", target=2.0, unit="s", direction="minimize")
    engine.register_capability("acc", "quality", target=0.9, direction="maximize")
    engine.measure_capability("lat", 10.0)
    engine.measure_capability("acc", 0.5)
    engine.identify_weakness("flaky io", "reliability", "medium", "timeouts")
    lat_w = next(w for w in engine.analyze_weaknesses() if w.type == "efficiency")

    planned = {e.strategy: e for e in engine.generate_experiments(lat_w.id, 3)}
    _run(engine, planned["caching"].id, 5.0)  # +50 % vs expected +40 %: beats it
    _run(engine, planned["query_optimization"].id, 6.0)  # +40 % vs +30 %: beats it
    _run(engine, planned["resource_pooling"].id, None)  # raises: failed, not beaten
    # a neural-system experiment (no expectation of its own): promoted, so it reached the
    # judge's bar and counts in the share, and as a model promotion
    neural = engine.store.add_experiment(model_id=None, strategy="train")
    engine.store.update_experiment(
        neural.id,
        status=ExperimentStatus.COMPLETED,
        decision=Decision.PROMOTE,
        statistics={"relative_improvement": 0.2},
    )
    engine.measure_capability("lat", 1.5)  # at target: resolves the efficiency weakness
    engine.measure_capability("acc", 0.95)  # resolves the accuracy one

    # Count the records independently of the engine's code.
    finished = [
        e
        for e in engine.store.list_experiments()
        if e.status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    ]
    with_exp = [e for e in finished if e.expected_improvement is not None]
    beat = [
        e
        for e in with_exp
        if e.status is ExperimentStatus.COMPLETED
        and e.statistics["relative_improvement"] >= e.expected_improvement
    ]
    judged = [e for e in finished if e.expected_improvement is None]
    promoted = [e for e in judged if e.decision is Decision.PROMOTE]
    weaknesses = engine.store.list_weaknesses()
    resolved = [w for w in weaknesses if w.status is WeaknessStatus.RESOLVED]
    assert (len(beat), len(with_exp), len(resolved), len(weaknesses)) == (2, 3, 2, 3)
    assert (len(promoted), len(judged)) == (1, 1)
    expected_score = 0.6 * (len(beat) + len(promoted)) / (len(with_exp) + len(judged)) + (
        0.4 * len(resolved) / len(weaknesses)
    )

    a = engine.get_self_assessment()
    assert a.learning_quality_score == pytest.approx(expected_score)  # 0.6 * 3/4 + 0.4 * 2/3
    assert a.grade == "B"
    assert a.components["exceeded"] == 3 and a.components["with_expectation"] == 4
    assert (a.components["engine_exceeded"], a.components["engine"]) == (2, 3)
    assert (a.components["judged_promoted"], a.components["judged"]) == (1, 1)
    assert a.capabilities["total"] == 2 and a.capabilities["at_target"] == 2
    assert a.weaknesses["open_by_severity"]["medium"] == 1
    assert a.experiments["finished"] == 4 and a.experiments["successes"] == 3
    assert a.experiments["success_rate"] == pytest.approx(0.75)
    assert a.improvements["model_promotions"] == 1 and a.improvements["applied_total"] == 1
    assert a.meta_learnings["count"] >= 4
    # outcomes in order: success, success, failed, promoted -> windows of 2: 1.0 then 0.5
    assert a.trend["direction"] == "declining"
    assert a.trend["earlier_success_rate"] == 1.0 and a.trend["recent_success_rate"] == 0.5

    # one more weakness resolved by hand would not count: won't-fix is not resolved
    engine.set_weakness_status(
        next(w.id for w in weaknesses if w.status.is_active()), "wont_fix", "rare"
    )
    assert engine.get_self_assessment().learning_quality_score == pytest.approx(expected_score)


@pytest.mark.parametrize(
    ("score", "grade"),
    [(0.81, "A"), (0.8, "B"), (0.61, "B"), (0.6, "C"), (0.41, "C"), (0.4, "D"), (0.0, "D")],
)
def test_grade_thresholds_are_strict(score: float, grade: str) -> None:
    assert grade_for(score) == grade


def test_learning_quality_with_nothing_to_count_is_zero_and_checked() -> None:
    q = learning_quality(0, 0, 0, 0)
    assert (q.score, q.grade) == (0.0, "D")
    assert learning_quality(3, 4, 1, 2).score == pytest.approx(0.6 * 0.75 + 0.4 * 0.5)
    with pytest.raises(ConfigError, match="exceeded <= with_expectation"):
        learning_quality(5, 4, 0, 0)


def test_improvement_history_is_kept_newest_first(engine: SelfImprovementEngine) -> None:
    first = engine.track_improvement_history(
        "1.0.0", "first tracked version", improvements=[], delta=None, changes=["baseline"]
    )
    second = engine.track_improvement_history(
        "1.1.0",
        "cached the hot path",
        improvements=[1, 2],
        delta=0.42,
        changes=["caching", "pooling"],
    )
    assert [h.id for h in engine.get_improvement_history()] == [second.id, first.id]
    [latest] = engine.get_improvement_history(limit=1)
    assert (latest.version, latest.performance_delta, latest.changes) == (
        "1.1.0",
        0.42,
        ["caching", "pooling"],
    )
    assert engine.get_self_assessment().trend["latest_version"] == "1.1.0"
    with pytest.raises(ConfigError, match="delta must be a finite number"):
        engine.track_improvement_history("1.2.0", "x", delta=float("nan"))


def test_the_neural_systems_promotions_count_in_the_assessment(improver: SelfImprover) -> None:
    """After a real promotion by the neural loop (no engine experiment at all), the grade
    counts it: it reached the judge's bar, its expectation."""
    task = wine_task()
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-5, seed=0))  # barely trained
    improver.register_model("wine", task, module, {"width": 16, "depth": 1})
    out = improver.improve("wine", "retrain", budget=Budget(epochs=30, seconds=30))
    assert out.decision is Decision.PROMOTE, out.reason
    rejected = improver.store.add_experiment(model_id=None, strategy="train")
    improver.store.update_experiment(
        rejected.id, status=ExperimentStatus.COMPLETED, decision=Decision.REJECT
    )

    with SelfImprovementEngine(store=improver.store, home=improver.home) as engine:
        a = engine.get_self_assessment()
    assert (a.components["judged_promoted"], a.components["judged"]) == (1, 2)
    assert (a.components["exceeded"], a.components["with_expectation"]) == (1, 2)
    assert a.experiments["finished"] == 2 and a.improvements["model_promotions"] == 1
    resolved, weaknesses = a.components["resolved"], a.components["weaknesses"]
    assert weaknesses >= 1  # wine is short of its 0.99 target
    assert a.learning_quality_score == pytest.approx(0.6 * 1 / 2 + 0.4 * resolved / weaknesses)
