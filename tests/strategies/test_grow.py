"""``grow``: children start from the trained incumbent (function-preserving), train on, and the
candidate reloads from its params."""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.nn.mlp import parse_mlp
from selfimprove.seeding import torch_seeded
from selfimprove.strategies import Budget, StrategyContext
from selfimprove.strategies._grow import MAX_DRIFT, GrowConfig, GrowStrategy, grown_widths
from selfimprove.tasks import SupervisedTask, Task
from tests.conftest import wine_task


def _context(task: Task, objective: str = "accuracy", **params: Any) -> StrategyContext:
    return StrategyContext(
        task=task,
        objective=objective,
        budget=Budget(epochs=6, seconds=60.0),
        seed=5,
        params=params,
        started=time.monotonic(),
    )


def _registered(si: SelfImprover, task: Task, params: dict[str, Any]) -> None:
    with torch_seeded(0):
        module = task.build(params)
    si.register_model("wine", task, module, params)


def test_grow_trains_function_preserving_children_and_the_candidate_reloads(
    improver: SelfImprover,
) -> None:
    task = wine_task()
    _registered(improver, task, {"width": 8, "depth": 1, "activation": "relu"})
    inc = improver.load("wine")
    cand = GrowStrategy().apply(inc, _context(task))
    children = cand.details["children"]
    assert [c["growth"] for c in children] == ["widen", "deepen"]
    assert all(c["max_output_change_before_training"] <= MAX_DRIFT for c in children)
    assert cand.details["chosen"] in ("widen", "deepen")
    assert cand.origin == "warm_start" and cand.cost.epochs <= 6
    assert list(parse_mlp(cand.module).widths) == cand.details["widths_after"]
    # The params rebuild the candidate exactly (what the registry will do when it reloads it).
    rebuilt = task.build(cand.params)
    rebuilt.load_state_dict(cand.module.state_dict())
    x = task.splits().validation.x
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), cand.module.eval()(x))
    assert inc.module is not cand.module and list(parse_mlp(inc.module).widths) == [8]


def test_grow_is_seeded(improver: SelfImprover) -> None:
    task = wine_task()
    _registered(improver, task, {"width": 8, "depth": 1})
    inc = improver.load("wine")
    a = GrowStrategy().apply(inc, _context(task))
    b = GrowStrategy().apply(inc, _context(task))
    assert a.details["chosen"] == b.details["chosen"]
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_grow_says_why_it_does_not_apply(improver: SelfImprover) -> None:
    task = wine_task()
    _registered(improver, task, {"width": 8, "depth": 1, "activation": "tanh"})
    inc = improver.load("wine")
    why = GrowStrategy().applicable(inc, _context(task, "size_bytes"))
    assert why is not None and "makes models larger" in why
    # A builder that ignores ``widths`` cannot hold a grown model: refused before anything runs.
    fixed = SupervisedTask.classification(
        "fixed_wine",
        task.splits().train.x.numpy(),
        task.splits().train.y.numpy(),
        build=lambda p: nn.Sequential(nn.Linear(13, 8), nn.Tanh(), nn.Linear(8, 3)),
        default_params={},
    )
    why = GrowStrategy().applicable(inc, _context(fixed))
    assert why is not None and "cannot" in why
    # tanh: only widening applies (deepening would change the function).
    assert GrowStrategy().applicable(inc, _context(task, growths="deepen")) is not None
    assert GrowStrategy().applicable(inc, _context(task)) is None


def test_grow_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="does not understand"):
        GrowConfig.from_params({"nosuch": 1})
    with pytest.raises(ConfigError, match="factor"):
        GrowConfig.from_params({"factor": 0.5})
    with pytest.raises(ConfigError, match="growths"):
        GrowConfig.from_params({"growths": "shrink"})
    with pytest.raises(ConfigError, match="max_depth"):
        GrowConfig.from_params({"max_depth": 0})
    assert GrowConfig.from_params({"growths": "widen"}).growths == ("widen",)
    assert grown_widths((4, 600), 2.0, 1024) == (8, 1024)
    assert grown_widths((1024,), 2.0, 1024) == (1024,)


def test_grow_keeps_a_bottleneck_the_task_requires(improver: SelfImprover) -> None:
    from selfimprove.tasks import resolve_task

    task = resolve_task("memory_consolidation")  # an autoencoder: one layer must stay narrow
    params = task.initial_params()
    with torch_seeded(0):
        module = task.build(params)
    improver.register_model("memory", task, module, params)
    inc = improver.load("memory")
    widths = parse_mlp(inc.module).widths
    context = StrategyContext(
        task=task, objective=task.primary.name, budget=Budget(epochs=2, seconds=60.0), seed=1
    )
    assert GrowStrategy().applicable(inc, context) is None
    cand = GrowStrategy().apply(inc, context)
    widen = next(c for c in cand.details["children"] if c["growth"] == "widen")
    narrowest = widths.index(min(widths))
    assert widen["widths"][narrowest] == widths[narrowest]  # the bottleneck kept
    assert sum(widen["widths"]) > sum(widths)
    assert widen["max_output_change_before_training"] <= MAX_DRIFT


def test_deepening_stops_at_max_depth(improver: SelfImprover) -> None:
    task = wine_task()
    _registered(improver, task, {"widths": [8, 8], "activation": "relu"})
    inc = improver.load("wine")
    capped = GrowStrategy().applicable(inc, _context(task, growths="deepen", max_depth=2))
    assert capped is not None and "no growth applies" in capped
    assert GrowStrategy().applicable(inc, _context(task, growths="deepen", max_depth=3)) is None
