from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import torch

from selfimprove.errors import BudgetExceededError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.registry import LoadedModel
from selfimprove.store import Decision, ExperimentStatus
from selfimprove.strategies import (
    STRATEGIES,
    Budget,
    Candidate,
    Cost,
    RetrainStrategy,
    Strategy,
    StrategyContext,
    get_strategy,
)
from selfimprove.tasks import SupervisedTask
from tests.conftest import wine_task


def _register(si: SelfImprover, lr: float = 1e-3, epochs: int = 1, task: Any = None) -> None:
    task = task or wine_task()
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=epochs, lr=lr, seed=0))
    si.register_model("wine", task, module, {"width": 16, "depth": 1})


def test_strategy_table_resolves_names() -> None:
    assert {"train", "retrain"} <= set(STRATEGIES)
    assert isinstance(get_strategy("retrain"), RetrainStrategy)


def test_retrain_starts_fresh_and_keeps_the_architecture(improver: SelfImprover) -> None:
    _register(improver, lr=1e-5)  # barely trained
    out = improver.improve("wine", "retrain", budget=Budget(epochs=40, seconds=30))
    assert out.decision is Decision.PROMOTE, out.reason
    v = improver.registry.incumbent("wine")
    assert (v.strategy, v.origin, v.params) == ("retrain", "fresh_init", {"width": 16, "depth": 1})


def test_train_does_not_apply_to_size(improver: SelfImprover) -> None:
    _register(improver)
    out = improver.improve("wine", "train", objective="size_bytes")
    assert out.status == "not_applicable" and "size_bytes" in out.reason
    assert improver.store.list_experiments() == []


def test_train_respects_a_small_seconds_budget(improver: SelfImprover) -> None:
    _register(improver)
    t0 = time.perf_counter()
    out = improver.improve("wine", "train", budget=Budget(epochs=100_000, seconds=0.5))
    assert time.perf_counter() - t0 < 10
    exp = improver.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    assert exp.status is ExperimentStatus.COMPLETED
    assert exp.statistics["strategy_details"]["stopped"] in ("time_budget", "early_stopping")


class _Sleeper(Strategy):
    """Overruns its budget without ever checking it."""

    name = "sleeper"
    family = "training"

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        time.sleep(context.budget.hard_limit_s + 0.2)
        return Candidate(
            copy.deepcopy(incumbent.module),
            dict(incumbent.version.params),
            self.name,
            "copy",
            {},
            Cost(epochs=0, seconds=context.elapsed()),
        )


class _Checker(Strategy):
    """Checks its budget in a loop, as long strategies must."""

    name = "checker"
    family = "training"

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        while True:
            context.check_budget()
            time.sleep(0.05)


@pytest.mark.parametrize("strategy", [_Checker(), _Sleeper()], ids=["checks", "ignores"])
def test_overrunning_strategy_is_stopped_and_failed_then_loop_goes_on(
    improver: SelfImprover, strategy: Strategy
) -> None:
    _register(improver)
    out = improver.loop.improve("wine", cycle=1, strategy=strategy, budget=Budget(1, 0.2))
    assert out.status == "failed" and BudgetExceededError.__name__ in out.reason
    assert improver.store.get_experiment(out.experiment_id).status is ExperimentStatus.FAILED  # type: ignore[arg-type]
    assert improver.run(1, planned=False)[0].status == "completed"


class _EpochHog(Strategy):
    """Reports more epochs than its budget allowed."""

    name = "hog"
    family = "training"

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        return Candidate(
            incumbent.module,
            dict(incumbent.version.params),
            self.name,
            "copy",
            {},
            Cost(epochs=context.budget.epochs + 1, seconds=0.0),
        )


def test_epoch_overrun_is_a_failed_experiment(improver: SelfImprover) -> None:
    _register(improver)
    out = improver.loop.improve("wine", cycle=1, strategy=_EpochHog(), budget=Budget(3, 10))
    assert out.status == "failed" and "4 epochs, over its budget of 3" in out.reason


def test_retrain_leads_back_from_a_quantized_incumbent(improver: SelfImprover) -> None:
    from selfimprove.strategies import QuantizeStrategy

    # int8 on a 16-unit model is slower at batch 1 (by more than the default guard allows on
    # a loaded machine): a task that tolerates it, so that the quantized incumbent exists.
    base = wine_task()
    tolerant = SupervisedTask(
        "wine_tolerant", kind="classification", splits=base.splits(), build=base.build,
        default_params=base.default_params(), latency_tolerance=1000.0,
    )  # fmt: skip
    _register(improver, lr=1e-3, epochs=30, task=tolerant)
    q = improver.improve("wine", "quantize", objective="size_bytes")
    assert q.decision is Decision.PROMOTE, q.reason
    assert "quantization" in improver.registry.incumbent("wine").params
    assert improver.improve("wine", "train").status == "not_applicable"
    out = improver.improve("wine", "retrain", budget=Budget(epochs=60, seconds=30))
    assert out.status == "completed"
    v = improver.registry.version("wine", improver.registry.versions("wine")[-1].number)
    assert "quantization" not in v.params and v.origin == "fresh_init"
    assert isinstance(get_strategy("quantize"), QuantizeStrategy)
