"""``prune``: a real gain on digits proven by the judge, honest refusals, budgets."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from selfimprove.errors import BudgetExceededError, ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.evaluation import Evaluator
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.mlp import parse_mlp
from selfimprove.registry import LoadedModel
from selfimprove.seeding import torch_seeded
from selfimprove.store import Decision
from selfimprove.strategies import Budget, StrategyContext
from selfimprove.strategies._prune import (
    PruneConfig,
    PruneStrategy,
    pruned_widths,
    width_schedule,
)
from selfimprove.tasks import SupervisedTask, Task, build_mlp, resolve_task
from tests.conftest import wine_task

WIDE = {"width": 256, "depth": 2}


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def wide_digits() -> dict[str, torch.Tensor]:
    """Weights of an over-wide 256×2 MLP trained well on the built-in digits task."""
    task = resolve_task("pattern_recognition")
    with torch_seeded(0):
        module = task.build(WIDE)
    train_(module, task, TrainConfig(epochs=30, lr=1e-3, seed=0))
    return {k: v.clone() for k, v in module.state_dict().items()}


def _register_digits(si: SelfImprover, state: Mapping[str, torch.Tensor]) -> Task:
    task = resolve_task("pattern_recognition")
    with torch_seeded(0):  # the initial weights are replaced; the seed keeps the RNG honest
        module = task.build(WIDE)
    module.load_state_dict(state)
    si.register_model("digits", task, module, dict(WIDE))
    return task


def _context(
    task: Task,
    *,
    budget: Budget | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 7,
    started: float | None = None,
) -> StrategyContext:
    return StrategyContext(
        task=task,
        objective="size_bytes",
        budget=budget or Budget(epochs=5, seconds=60.0),
        seed=seed,
        params=dict(params or {}),
        started=time.monotonic() if started is None else started,
    )


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = module.eval()(x)
    return out


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(module: nn.Module, snapshot: Mapping[str, torch.Tensor]) -> bool:
    state = module.state_dict()
    return state.keys() == snapshot.keys() and all(
        torch.equal(state[k], snapshot[k]) for k in snapshot
    )


# --------------------------------------------------------------------------- planning
def test_widths_round_and_shrink_geometrically() -> None:
    assert pruned_widths([256, 256], 0.5) == (128, 128)
    assert pruned_widths([10, 1, 3], 0.99) == (9, 1, 2)  # at least one removed, never zero
    assert pruned_widths([3], 0.01) == (1,)
    assert width_schedule([256], 0.25, 2) == [(128,), (64,)]
    assert width_schedule([4], 0.5, 3) == [(3,), (2,)]  # a round that changes nothing is dropped


# --------------------------------------------------------------------------- the real gain
def test_prune_halves_wide_digits_mlp_and_the_judge_promotes_it(
    improver: SelfImprover, wide_digits: dict[str, torch.Tensor]
) -> None:
    task = _register_digits(improver, wide_digits)
    start = time.perf_counter()

    out = improver.loop.improve(
        "digits", cycle=1, strategy=PruneStrategy(), budget=Budget(epochs=20, seconds=30.0)
    )

    seconds = time.perf_counter() - start
    assert out.objective == "size_bytes" and out.decision is Decision.PROMOTE, out.reason
    exp = improver.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    details = exp.statistics["strategy_details"]
    assert details["widths_before"] == [256, 256]
    assert all(2 * a <= b for a, b in zip(details["widths_after"], [256, 256], strict=True))
    assert details["parameters_after"] < 0.35 * details["parameters_before"]
    assert out.after < 0.35 * out.before  # checkpoint bytes
    accuracy = exp.statistics["guards"]["accuracy"]
    assert accuracy["after"] >= accuracy["before"] - 0.005, accuracy  # ≤ 0.5 point lost
    assert 1 <= exp.compute["epochs"] <= 20 and seconds < 30.0
    # The promoted version reloads as the smaller MLP and scores exactly what was judged.
    loaded = improver.load("digits")
    assert (loaded.version.number, loaded.version.strategy, loaded.version.origin) == (
        2,
        "prune",
        "warm_start",
    )
    assert loaded.version.params == {"widths": [128, 128], "activation": "relu", "dropout": 0.0}
    assert sum(p.numel() for p in loaded.module.parameters()) == details["parameters_after"]
    (ev,) = Evaluator().evaluate([loaded.module], task, with_latency=False)
    assert ev.value("accuracy") == accuracy["after"]
    assert ev.value("accuracy", "test") == loaded.version.metrics["test_accuracy"]


def test_candidate_saves_and_reloads_to_identical_outputs_and_incumbent_is_untouched(
    improver: SelfImprover, wide_digits: dict[str, torch.Tensor]
) -> None:
    task = _register_digits(improver, wide_digits)
    inc = improver.load("digits")
    before, was_training = _snapshot(inc.module), inc.module.training

    cand = PruneStrategy().apply(inc, _context(task))

    assert _same_state(inc.module, before) and inc.module.training == was_training
    assert cand.module is not inc.module and parse_mlp(cand.module).widths == (128, 128)
    assert cand.origin == "warm_start" and cand.cost.epochs == cand.details["finetune_epochs"]
    assert 1 <= cand.cost.epochs <= 5
    version = improver.registry.save_version(
        inc.model,
        cand.module,
        cand.params,
        parent=inc.version,
        strategy=cand.strategy,
        origin=cand.origin,
        metrics={},
    )
    reloaded = improver.load("digits", version.number)
    x = task.splits().train.x
    assert torch.equal(_forward(reloaded.module, x), _forward(cand.module, x))


def test_same_seed_same_candidate_and_other_arch_keys_are_kept(improver: SelfImprover) -> None:
    task = wine_task()
    params = {"width": 16, "depth": 2, "activation": "gelu", "dropout": 0.1, "note": "kept"}
    with torch_seeded(0):
        module = task.build(params)
    improver.register_model("wine", task, module, params)
    inc = improver.load("wine")
    ctx = _context(task, budget=Budget(epochs=3, seconds=60.0), params={"keep": 0.25})

    a = PruneStrategy().apply(inc, ctx)
    b = PruneStrategy().apply(inc, ctx)

    assert a.params == {"widths": [4, 4], "activation": "gelu", "dropout": 0.1, "note": "kept"}
    assert _same_state(a.module, _snapshot(b.module))
    assert a.details["keep"] == 0.25
    assert a.details["parameters_after"] < a.details["parameters_before"]


# --------------------------------------------------------------------------- refusals
class _Residual(nn.Module):
    """Not an MLP that ``build_mlp`` makes: a skip connection around one hidden layer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Linear(13, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))  # (B, width)
        return self.out(h + torch.relu(self.hidden(h)))  # (B, 3)


def _wine_with(name: str, build: Any) -> SupervisedTask:
    base = wine_task()
    splits = base.splits()
    return SupervisedTask(
        name, kind="classification", splits=splits, build=build, default_params={"width": 8}
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("residual", "nn.Sequential"),
        ("no_hidden", "no hidden layer"),
        ("fixed_widths", "cannot build uneven widths"),
        ("accuracy", "not accuracy"),
    ],
)
def test_not_applicable_gives_a_reason_and_records_nothing(
    improver: SelfImprover, case: str, reason: str
) -> None:
    params: dict[str, Any] = {"width": 8, "depth": 1}
    objective = None
    if case == "residual":
        task = _wine_with("prune_residual", lambda p: _Residual(int(p["width"])))
    elif case == "fixed_widths":  # a builder that only knows width × depth
        task = _wine_with(
            "prune_fixed",
            lambda p: build_mlp(13, 3, {"width": p["width"], "depth": p["depth"]}),
        )
    else:
        task = wine_task()
        params = {"width": 8, "depth": 0} if case == "no_hidden" else params
        objective = "accuracy" if case == "accuracy" else None
    with torch_seeded(0):
        module = task.build(params)
    improver.register_model("m", task, module, params)

    out = improver.loop.improve("m", cycle=1, strategy=PruneStrategy(), objective=objective)

    assert out.status == "not_applicable" and reason in out.reason, out.reason
    assert improver.store.list_experiments() == []
    assert [v.number for v in improver.registry.versions("m")] == [1]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"keep": 1.5}, "keep=1.5"),
        ({"keep": 0}, "keep=0"),
        ({"keep": True}, r"keep=True is not a finite number"),
        ({"kepp": 0.5}, "'kepp'"),
        ({"steps": 0}, "steps=0"),
        ({"lr": -1.0}, r"lr=-1\.0 is not a finite number > 0"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"reconstruct": "maybe"}, "reconstruct='maybe' is not true or false"),
    ],
)
def test_bad_settings_are_config_errors_with_the_value(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        PruneConfig.from_params(params)


def test_bad_keep_fails_before_any_experiment_is_recorded(improver: SelfImprover) -> None:
    task = wine_task()
    with torch_seeded(0):
        module = task.build({"width": 8, "depth": 1})
    improver.register_model("wine", task, module, {"width": 8, "depth": 1})
    with pytest.raises(ConfigError, match=r"keep=1\.5.*keep=0\.5 halves"):
        improver.loop.improve("wine", cycle=1, strategy=PruneStrategy(), params={"keep": 1.5})
    assert improver.store.list_experiments() == []


# --------------------------------------------------------------------------- budgets
def test_tiny_seconds_budget_cuts_the_fine_tune_short_within_the_hard_limit(
    improver: SelfImprover, wide_digits: dict[str, torch.Tensor]
) -> None:
    _register_digits(improver, wide_digits)
    # 500 epochs take seconds; with early stopping off, only the clock can stop the fine-tune.
    budget = Budget(epochs=500, seconds=0.3)

    out = improver.loop.improve(
        "digits", cycle=1, strategy=PruneStrategy(), params={"patience": 0}, budget=budget
    )

    assert out.status == "completed", out.reason
    exp = improver.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    (round_,) = exp.statistics["strategy_details"]["rounds"]
    assert round_["stopped"] == "time_budget" and 1 <= round_["epochs_run"] < 500
    assert exp.durations["strategy_s"] < budget.hard_limit_s


def test_epochs_are_shared_by_rounds_and_never_exceed_the_budget(
    improver: SelfImprover, wide_digits: dict[str, torch.Tensor]
) -> None:
    task = _register_digits(improver, wide_digits)
    inc = improver.load("digits")
    ctx = _context(task, budget=Budget(epochs=3, seconds=60.0), params={"steps": 2, "keep": 0.25})

    cand = PruneStrategy().apply(inc, ctx)

    assert [r["widths"] for r in cand.details["rounds"]] == [[128, 128], [64, 64]]
    assert 2 <= cand.cost.epochs <= 3
    with pytest.raises(ConfigError, match=r"steps=4 needs at least 4 epochs"):
        PruneStrategy().apply(inc, _context(task, budget=Budget(epochs=3), params={"steps": 4}))


def test_spent_budget_fails_with_budget_exceeded_and_leaves_the_incumbent(
    improver: SelfImprover, wide_digits: dict[str, torch.Tensor]
) -> None:
    task = _register_digits(improver, wide_digits)
    inc: LoadedModel = improver.load("digits")
    before = _snapshot(inc.module)
    spent = _context(task, budget=Budget(seconds=1.0), started=time.monotonic() - 100.0)

    with pytest.raises(BudgetExceededError, match="over its budget of 1 s"):
        PruneStrategy().apply(inc, spent)

    assert _same_state(inc.module, before)
