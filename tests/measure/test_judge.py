from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from selfimprove.config import JudgeConfig
from selfimprove.errors import TaskError
from selfimprove.measure.evaluation import Evaluator
from selfimprove.measure.judge import Judge
from selfimprove.measure.stats import paired_test
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.objectives import Direction, Objective
from selfimprove.store import Decision
from selfimprove.tasks import SupervisedTask
from tests.conftest import wine_task

CFG = JudgeConfig(latency_repeats=5, serving_batch=8)


def _trained(task, seed: int, epochs: int):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    m = task.build(task.default_params())
    train_(m, task, TrainConfig(epochs=epochs, seed=seed, lr=3e-3, patience=0))
    return m


@pytest.mark.parametrize("seed", range(5))
def test_aa_candidate_is_never_promoted(seed: int) -> None:
    task = wine_task()
    inc = _trained(task, seed, epochs=3)
    cand = copy.deepcopy(inc)  # identical weights
    ev_inc, ev_cand = Evaluator(CFG).evaluate([inc, cand], task)
    j = Judge(CFG, seed=seed).judge(task, ev_inc, ev_cand)
    assert j.decision is Decision.REJECT
    assert j.statistics["relative_improvement"] == 0
    assert j.statistics["p_value"] == 1.0


def test_diverged_candidate_is_rejected_with_that_reason() -> None:
    task = wine_task()
    inc = _trained(task, 0, epochs=2)
    cand = copy.deepcopy(inc)
    with torch.no_grad():
        cand[0].weight.fill_(float("nan"))
    ev_inc, ev_cand = Evaluator(CFG).evaluate([inc, cand], task)
    j = Judge(CFG).judge(task, ev_inc, ev_cand)
    assert j.decision is Decision.REJECT
    assert j.reason.startswith("diverged")


def test_real_improvement_is_promoted_and_test_is_reported() -> None:
    task = wine_task()
    weak = _trained(task, 0, epochs=1)
    strong = copy.deepcopy(weak)
    train_(strong, task, TrainConfig(epochs=60, seed=1, lr=3e-3))
    ev_w, ev_s = Evaluator(CFG).evaluate([weak, strong], task)
    j = Judge(CFG).judge(task, ev_w, ev_s)
    assert j.decision is Decision.PROMOTE, j.reason
    st = j.statistics
    assert st["test"] == "mcnemar_exact" and st["p_value"] < 0.05
    assert st["relative_improvement"] >= 0.1
    assert st["test_after"] == pytest.approx(ev_s.value("accuracy", "test"))


def test_gain_below_threshold_is_rejected_even_if_significant() -> None:
    obj = Objective("mse", Direction.MINIMIZE, ideal=0.0)
    before = np.full(500, 1.0)
    after = before * 0.95  # 5 % better on every example: significant, but under 10 %
    name, p = paired_test(obj, before, after)
    assert name == "paired_bootstrap" and p < 0.01
    assert obj.relative_improvement(before.mean(), after.mean()) < 0.1


def test_mcnemar_matches_the_exact_binomial() -> None:
    acc = Objective("accuracy", Direction.MAXIMIZE, ideal=1.0)
    before = np.array([0] * 10 + [1] * 90, dtype=float)
    after = np.array([1] * 8 + [0] * 2 + [1] * 88 + [0] * 2, dtype=float)
    name, p = paired_test(acc, before, after)
    assert name == "mcnemar_exact"
    # 8 gained, 2 lost
    assert p == pytest.approx(stats.binomtest(8, 10, 0.5, alternative="greater").pvalue)


def test_paired_bootstrap_is_seeded() -> None:
    obj = Objective("mse", Direction.MINIMIZE, ideal=0.0)
    rng = np.random.default_rng(0)
    before = rng.random(200)
    after = before - rng.normal(0.01, 0.1, 200)
    assert paired_test(obj, before, after, seed=3) == paired_test(obj, before, after, seed=3)


def _weak_and_big(task):  # type: ignore[no-untyped-def]
    weak = _trained(task, 0, epochs=1)
    torch.manual_seed(0)
    big = task.build({"width": 256, "depth": 2})
    train_(big, task, TrainConfig(epochs=60, seed=1, lr=3e-3))
    return Evaluator(CFG).evaluate([weak, big], task)


def test_a_bigger_but_better_candidate_is_promoted_when_quality_is_the_target() -> None:
    task = wine_task()
    ev_w, ev_b = _weak_and_big(task)
    j = Judge(CFG).judge(task, ev_w, ev_b)
    size = j.statistics["guards"]["size_bytes"]
    assert size["after"] > 10 * size["before"]  # the candidate is much bigger...
    assert size["passed"] is True and size["rule"].startswith("limit only")
    assert j.decision is Decision.PROMOTE, j.reason  # ...and promoted for its accuracy


def test_size_limit_blocks_a_bigger_candidate() -> None:
    task = wine_task()
    ev_w, ev_b = _weak_and_big(task)
    limited = SupervisedTask(
        task.name,
        kind="classification",
        splits=task.splits(),
        build=task.build,
        default_params=task.default_params(),
        size_limit_bytes=ev_b.size_bytes - 1,
    )
    j = Judge(CFG).judge(limited, ev_w, ev_b)
    assert j.decision is Decision.REJECT
    assert "beyond its limit" in j.reason
    assert j.statistics["guards"]["size_bytes"]["within_limit"] is False
    roomy = dataclasses.replace(limited.objective("size_bytes"), limit=ev_b.size_bytes)
    assert roomy.within_limit(ev_b.size_bytes)


def test_size_may_not_grow_beyond_its_tolerance_while_latency_is_the_target() -> None:
    task = wine_task()
    ev_w, _ = _weak_and_big(task)
    assert ev_w.latency is not None
    # the same model, twice as fast and 10 % bigger: the size guard (5 %) turns it down
    faster = dataclasses.replace(
        ev_w,
        latency=dataclasses.replace(ev_w.latency, batch1_ms=ev_w.latency.batch1_ms * 0.5),
        size_bytes=int(ev_w.size_bytes * 1.1),
    )
    j = Judge(CFG).judge(task, ev_w, faster, objective="latency_ms")
    assert j.decision is Decision.REJECT
    assert "guard size_bytes regressed +10.0%" in j.reason
    same_size = dataclasses.replace(faster, size_bytes=ev_w.size_bytes)
    assert Judge(CFG).judge(task, ev_w, same_size, objective="latency_ms").promoted


def test_size_limit_must_be_positive() -> None:
    task = wine_task()
    with pytest.raises(TaskError, match="size_limit_bytes must be > 0"):
        SupervisedTask(
            "x",
            kind="classification",
            splits=task.splits(),
            build=task.build,
            default_params={},
            size_limit_bytes=0,
        )


def test_size_target_is_judged_deterministically_with_accuracy_as_guard() -> None:
    task = wine_task()
    big = _trained(task, 0, epochs=30)
    torch.manual_seed(1)
    small = task.build({"width": 4, "depth": 1})
    train_(small, task, TrainConfig(epochs=60, seed=1, lr=3e-3))
    ev_big, ev_small = Evaluator(CFG).evaluate([big, small], task)
    j = Judge(CFG).judge(task, ev_big, ev_small, objective="size_bytes")
    st = j.statistics
    assert st["test"] == "deterministic" and st["p_value"] == 0.0
    acc = st["guards"]["accuracy"]
    assert acc["absolute"] is True and acc["tolerance"] == 0.01
    # promoted exactly when accuracy did not drop by more than one point
    assert j.promoted == (acc["before"] - acc["after"] <= 0.01 + 1e-12)


def test_accuracy_guard_blocks_a_smaller_but_worse_model() -> None:
    task = wine_task()
    big = _trained(task, 0, epochs=30)
    torch.manual_seed(1)
    untrained = task.build({"width": 4, "depth": 1})
    ev_big, ev_small = Evaluator(CFG).evaluate([big, untrained], task)
    j = Judge(CFG).judge(task, ev_big, ev_small, objective="size_bytes")
    assert j.decision is Decision.REJECT and "guard accuracy regressed" in j.reason
    assert "points" in j.reason


def test_latency_timing_rotates_the_order() -> None:
    import time as _time

    calls: list[str] = []

    class Probe(torch.nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(self.name)
            _time.sleep(0)
            return x

    task = wine_task()
    Evaluator(JudgeConfig(latency_repeats=4, serving_batch=2)).latency(
        [Probe("a"), Probe("b")], task
    )
    timed = calls[12:]  # after 3 warm-up pairs per model
    firsts = timed[0::4]  # the first model timed in each repeat (each times batch 1 and serving)
    assert firsts == ["a", "b", "a", "b"]


def test_latency_guards_a_quality_target_on_counted_cost_not_on_timing() -> None:
    """Same seed, same decisions: a loaded machine that slows the candidate's timing cannot
    turn down a better candidate, and a candidate that really does more work is turned down
    however fast it happened to time."""
    task = wine_task()
    weak = _trained(task, 0, epochs=1)
    strong = copy.deepcopy(weak)
    train_(strong, task, TrainConfig(epochs=60, seed=1, lr=3e-3))
    ev_w, ev_s = Evaluator(CFG).evaluate([weak, strong], task)
    assert ev_w.latency is not None and ev_s.latency is not None
    assert ev_s.nominal_latency_ms == ev_w.nominal_latency_ms  # same architecture, same count
    slowed = dataclasses.replace(
        ev_s, latency=dataclasses.replace(ev_s.latency, batch1_ms=ev_s.latency.batch1_ms * 5)
    )
    j = Judge(CFG).judge(task, ev_w, slowed)
    guard = j.statistics["guards"]["latency_ms"]
    assert j.decision is Decision.PROMOTE, j.reason
    assert guard["rule"].startswith("nominal latency") and guard["passed"] is True
    assert guard["measured_after"] == slowed.value("latency_ms") > ev_w.value("latency_ms")
    assert ev_w.nominal_latency_ms is not None
    # three times the work and more than min_change (0.05 ms) slower, however it timed
    heavier = dataclasses.replace(ev_s, nominal_latency_ms=3 * ev_w.nominal_latency_ms + 0.1)
    j = Judge(CFG).judge(task, ev_w, heavier)
    assert j.decision is Decision.REJECT
    assert "latency_ms" in j.reason


def test_nominal_latency_counts_work_and_ignores_load() -> None:
    from selfimprove.nn import nominal_latency_ms

    x = torch.zeros(1, 13)
    small = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    wide = torch.nn.Sequential(torch.nn.Linear(13, 512), torch.nn.ReLU(), torch.nn.Linear(512, 3))
    deep = torch.nn.Sequential(*[torch.nn.Linear(13, 13) for _ in range(6)], torch.nn.Linear(13, 3))
    figures = [nominal_latency_ms(m, x) for m in (small, wide, deep)]
    assert figures[0] < figures[1] and figures[0] < figures[2]
    assert nominal_latency_ms(small, x) == figures[0]  # counted: the same every time
    assert small.training  # the module's mode is left as it was
