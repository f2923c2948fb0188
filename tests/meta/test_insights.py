"""Meta-learning insights: counts from the experiments table, the Wilson bound, idempotent
writes."""

from __future__ import annotations

import math

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.meta.gain import MODEL_OBJECTIVES
from selfimprove.meta.insights import (
    Insight,
    derive_insights,
    size_bucket,
    update_insights,
    wilson_lower_bound,
)
from selfimprove.store import Decision, ExperimentRecord, ExperimentStatus
from selfimprove.strategies import Budget
from tests.conftest import wine_task

SMALL = Budget(epochs=2, seconds=10.0)


def _history(si: SelfImprover, cycles: int = 3) -> None:
    """Two real wine models (different families and widths) and a mixed, real history."""
    for name, task_name, width in (("narrow", "wine_a", 16), ("wide", "wine_b", 300)):
        task = wine_task(task_name)
        torch.manual_seed(0)
        module = task.build({"width": width, "depth": 1})
        train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
        si.register_model(name, task, module, {"width": width, "depth": 1})
    for cycle in range(1, cycles + 1):
        for name in ("narrow", "wide"):
            for strategy in ("train", "retrain"):
                si.loop.improve(
                    name, cycle=cycle, strategy=strategy, budget=SMALL, only_below_target=False
                )
            si.loop.improve(name, cycle=cycle, strategy="prune", only_below_target=False)
    si.loop.improve(
        "narrow",
        cycle=cycles + 1,
        strategy="train",
        budget=SMALL,
        params={"lr": 1e12, "optimizer": "sgd", "clip_norm": None},
        only_below_target=False,
    )


def _finished(si: SelfImprover) -> list[ExperimentRecord]:
    return [
        e
        for e in si.store.list_experiments()
        if e.status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    ]


def test_wilson_lower_bound_matches_a_hand_computed_case() -> None:
    # 9 of 10, z = 1.959964: p = 0.9, z²/2n = 0.192073, p(1-p)/n + z²/4n² = 0.0186036,
    # z·sqrt(.) = 0.267328, so (0.9 + 0.192073 - 0.267328) / (1 + 0.384146) = 0.595850.
    assert wilson_lower_bound(9, 10) == pytest.approx(0.595850, abs=1e-6)
    assert wilson_lower_bound(1, 1) == pytest.approx(0.206549, abs=1e-6)  # seen once: weak
    assert wilson_lower_bound(10, 10) == pytest.approx(0.722467, abs=1e-6)
    assert wilson_lower_bound(0, 5) == 0.0 and wilson_lower_bound(0, 0) == 0.0
    assert wilson_lower_bound(90, 100) > wilson_lower_bound(9, 10)  # more evidence, more belief
    with pytest.raises(ConfigError, match="successes=11, count=10"):
        wilson_lower_bound(11, 10)


def test_counts_and_successes_match_the_experiments_table(improver: SelfImprover) -> None:
    _history(improver)
    insights = derive_insights(improver.store)
    assert insights == sorted(insights, key=lambda i: (i.kind, i.subject))
    assert all(isinstance(i, Insight) for i in insights)
    families = {m.id: m.family for m in improver.store.list_models()}
    finished = _finished(improver)
    assert any(e.decision is Decision.PROMOTE for e in finished)
    assert any(e.status is ExperimentStatus.FAILED for e in finished)

    effects = [i for i in insights if i.kind == "strategy_effect"]
    assert sum(i.count for i in effects) == len(finished)  # each experiment in one group
    for insight in effects:
        strategy, okind, family = insight.subject.split("|")
        group = [
            e
            for e in finished
            if e.strategy == strategy
            and families[e.model_id] == family  # type: ignore[index]
            and ("model" if e.objective in MODEL_OBJECTIVES else "data") == okind
        ]
        promoted = [e for e in group if e.decision is Decision.PROMOTE]
        assert (insight.count, insight.successes) == (len(group), len(promoted))
        assert insight.evidence["experiment_ids"] == [e.id for e in group]
        assert insight.confidence == pytest.approx(wilson_lower_bound(len(promoted), len(group)))
        assert f"promoted in {len(promoted)}/{len(group)} finished experiments" in (
            insight.statement
        )
        if promoted:
            gains = sorted(e.statistics["relative_improvement"] for e in promoted)
            mid = len(gains) // 2
            median = gains[mid] if len(gains) % 2 else (gains[mid - 1] + gains[mid]) / 2
            assert insight.evidence["median_gain_when_promoted"] == pytest.approx(median)
            less = "less error" if okind == "data" else "smaller size_bytes"
            assert f"{median:.1%} {less}" in insight.statement

    guards = [i for i in insights if i.kind == "guard_held"]
    prunes = [e for e in finished if e.strategy == "prune" and e.status.value == "completed"]
    assert prunes and sum(i.count for i in guards) == len(prunes)  # accuracy guarded each time
    for insight in guards:
        strategy, guard, family, bucket = insight.subject.split("|")
        assert (strategy, guard) == ("prune", "accuracy")
        group = [
            e
            for e in prunes
            if families[e.model_id] == family  # type: ignore[index]
            and size_bucket(improver.store.version_by_id(e.incumbent_version_id))[0] == bucket  # type: ignore[arg-type]
        ]
        held = [e for e in group if e.statistics["guards"]["accuracy"]["passed"]]
        assert (insight.count, insight.successes) == (len(group), len(held))
        assert f"in {len(held)}/{len(group)} experiments on {family} models with" in (
            insight.statement
        )
    # the wide model's first prune was judged at width 300
    assert any(i.subject.endswith("|wine_b|width>256") for i in guards)

    (failure,) = [i for i in insights if i.kind == "failure_mode"]
    assert failure.subject == "train|DivergedError"
    trains = [e for e in finished if e.strategy == "train"]
    assert (failure.count, failure.successes) == (len(trains), 1)


def test_update_insights_refreshes_rows_without_duplicating(improver: SelfImprover) -> None:
    _history(improver, cycles=1)
    first = update_insights(improver.store)
    stored = improver.store.list_meta_learnings()
    assert len(stored) == len(first) > 0
    again = update_insights(improver.store)
    assert [r.id for r in again] == [r.id for r in first]
    assert len(improver.store.list_meta_learnings()) == len(first)

    subject = "train|data|wine_a"
    before = next(r for r in again if r.kind == "strategy_effect" and r.subject == subject)
    improver.loop.improve("narrow", cycle=9, strategy="train", budget=SMALL)
    after = {(r.kind, r.subject): r for r in update_insights(improver.store)}
    row = after[("strategy_effect", subject)]
    assert row.id == before.id and row.count == before.count + 1
    assert len(improver.store.list_meta_learnings()) == len(after)
    assert math.isclose(row.confidence, wilson_lower_bound(row.successes, row.count))


def test_size_bucket_reads_widths_then_parameters(improver: SelfImprover) -> None:
    _history(improver, cycles=1)
    wide = improver.registry.version("wide", 1)
    assert size_bucket(wide) == ("width>256", "width > 256")
    assert size_bucket(improver.registry.version("narrow", 1))[0] == "width<=64"
    assert size_bucket(None) == ("size_unknown", "unknown size")
