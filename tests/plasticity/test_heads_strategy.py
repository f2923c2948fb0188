"""The ``heads`` strategy through the main loop: registry, judge, reload."""

from __future__ import annotations

from pathlib import Path

import torch

from selfimprove.config import JudgeConfig, SelfImprovementConfig
from selfimprove.loop.experiment import ImprovementLoop
from selfimprove.measure.evaluation import Evaluator
from selfimprove.plasticity import CausalLM, LanguageModelTask, count_parameters
from selfimprove.registry import Registry
from selfimprove.store import Store
from selfimprove.strategies import Budget
from selfimprove.strategies._heads import HeadsStrategy
from selfimprove.tasks import SupervisedTask, build_mlp

PARAMS = {"n_layer": 4, "n_head": 8, "n_embd": 64, "n_positions": 64}


def test_heads_strategy_prunes_a_copy_and_the_candidate_reloads(
    home: Path, tiny: torch.nn.Module
) -> None:
    task = LanguageModelTask(
        "plasticity_test_lm", context=64, max_windows=(512, 64, 64), default_params=PARAMS
    )
    store = Store(home=home)
    registry = Registry(store, home)
    incumbent = CausalLM(tiny)
    before = {k: v.clone() for k, v in incumbent.state_dict().items()}
    registry.register("tiny_lm", task, incumbent, PARAMS)
    # A lighter timing protocol than the default (30 repeats at batch 64) keeps the test short.
    evaluator = Evaluator(JudgeConfig(latency_repeats=10, serving_batch=8))
    loop = ImprovementLoop(store, registry, SelfImprovementConfig(), seed=0, evaluator=evaluator)
    outcome = loop.improve(
        "tiny_lm",
        cycle=1,
        strategy=HeadsStrategy(),
        params={"prune_fraction": 0.4, "steps": 20},
        budget=Budget(epochs=5, seconds=120),
        only_below_target=False,
    )
    print(f"\nheads strategy: {outcome.status} {outcome.decision} — {outcome.reason}")
    assert outcome.status == "completed", outcome.reason
    assert outcome.objective == "size_bytes" and outcome.after < outcome.before
    versions = store.list_versions(store.get_model("tiny_lm").id)
    cand = versions[-1]
    assert sum(cand.params["heads_per_layer"]) == 32 - 13
    loaded = registry.load("tiny_lm", cand.number)
    assert count_parameters(loaded.module) < count_parameters(incumbent)
    x = task.splits().validation.x[:2]
    assert loaded.module(x).shape == (2, 64, 256)
    # The incumbent object was never touched.
    for k, v in incumbent.state_dict().items():
        assert torch.equal(v, before[k]), k
    store.close()


def test_heads_strategy_explains_why_it_does_not_apply(home: Path) -> None:
    from selfimprove.registry import LoadedModel
    from selfimprove.strategies import StrategyContext

    task = SupervisedTask.classification(
        "mlp_task",
        torch.randn(40, 4).numpy(),
        (torch.arange(40) % 2).numpy(),
        build=lambda p: build_mlp(4, 2, p),
        default_params={"width": 8, "depth": 1},
    )
    ctx = StrategyContext(task=task, objective="size_bytes", budget=Budget(), seed=0)
    inc = LoadedModel(
        model=None,  # type: ignore[arg-type]
        version=None,  # type: ignore[arg-type]
        task=task,
        module=build_mlp(4, 2, {"width": 8}),
    )
    why = HeadsStrategy().applicable(inc, ctx)
    assert why is not None and "language-model task" in why
