"""``quantize``: int8 candidates judged through the real loop, engines timed against each other.

The model that must be promoted is the digits MLP at width 2048, depth 2. At width 512 the
int8 model is about 2x *slower* than float at batch 1 on this machine (measured with both
engines: quantizing activations costs more than the arithmetic it saves), and the judge's
latency guard rightly rejects it; :func:`test_engine_latencies_are_reported_for_a_small_mlp`
reports that case instead of asserting it.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from safetensors import safe_open
from torch import nn

import selfimprove.nn.quantize as quantize
from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.evaluation import Evaluator
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.seeding import torch_seeded
from selfimprove.store import Decision, VersionStatus
from selfimprove.strategies import Budget, StrategyContext
from selfimprove.strategies._quantize import (
    MIN_REPEATS,
    QuantizeStrategy,
    training_inputs,
)
from selfimprove.tasks import SupervisedTask, Task, resolve_task
from tests.conftest import wine_task

logger = logging.getLogger(__name__)

AVAILABLE = [e for e in quantize.ENGINES if quantize.engine_unavailable(e) is None]
BIG = {"width": 2048, "depth": 2}


def _trained_digits(params: dict[str, Any], epochs: int) -> nn.Module:
    task = resolve_task("pattern_recognition")
    with torch_seeded(0):
        module = task.build(params)
    train_(module, task, TrainConfig(epochs=epochs, lr=1e-3, seed=0))
    return module.eval()


@pytest.fixture(scope="module")
def big_digits() -> nn.Module:
    """The digits MLP at 2048 x 2, trained three epochs (shared, never changed by a test)."""
    return _trained_digits(BIG, epochs=3)


@pytest.fixture
def si_big(improver: SelfImprover, big_digits: nn.Module) -> Iterator[SelfImprover]:
    improver.register_model("digits", "pattern_recognition", big_digits, dict(BIG))
    yield improver


def _report(details: dict[str, Any], label: str, record: Any) -> None:
    """Log (never assert) each engine's float/int8 latency ratio."""
    batch = details["timing"]["serving_batch"]
    for engine, s in details["speedup"].items():
        ms = details["latency_ms"]
        line = (
            f"{label} {engine}: float/int8 {s['batch1']:.2f}x at batch 1 "
            f"({ms['float']['batch1']:.3f} / {ms[engine]['batch1']:.3f} ms), "
            f"{s['serving']:.2f}x at batch {batch} "
            f"({ms['float']['serving']:.3f} / {ms[engine]['serving']:.3f} ms)"
        )
        logger.warning(line)
        record(f"{label}_{engine}", line)


def _check_timing_details(details: dict[str, Any], engines: list[str]) -> None:
    assert details["engines_timed"] == engines
    lat = details["latency_ms"]
    for engine in engines:
        for batch in ("batch1", "serving"):
            assert lat[engine][batch] > 0 and math.isfinite(lat[engine][batch])
            assert details["speedup"][engine][batch] == pytest.approx(
                lat["float"][batch] / lat[engine][batch]
            )
    # the winner is the engine with the lowest recorded batch-1 median
    assert details["engine"] == min(engines, key=lambda e: lat[e]["batch1"])
    assert details["timing"]["inputs"] == "training split"


def _context(task: Task, objective: str = "size_bytes", **kw: Any) -> StrategyContext:
    return StrategyContext(task=task, objective=objective, budget=Budget(1, 30.0), seed=7, **kw)


def test_quantize_shrinks_4x_keeps_accuracy_and_is_promoted(
    si_big: SelfImprover, big_digits: nn.Module, record_property: Any
) -> None:
    si = si_big
    out = si.loop.improve("digits", cycle=1, strategy=QuantizeStrategy(), objective="size_bytes")
    exp = si.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    st, details = exp.statistics, exp.statistics["strategy_details"]
    _report(details, "digits 2048x2", record_property)
    assert out.decision is Decision.PROMOTE, out.reason
    assert st["before"] / st["after"] >= 3.0  # size_bytes
    acc = st["guards"]["accuracy"]
    assert abs(acc["after"] - acc["before"]) <= 0.01  # validation, in points
    record_property("size_ratio", st["before"] / st["after"])
    record_property("validation_accuracy_change", acc["after"] - acc["before"])
    logger.warning(
        "size %.0f -> %.0f bytes (%.2fx); validation accuracy %.4f -> %.4f; engine %s",
        st["before"],
        st["after"],
        st["before"] / st["after"],
        acc["before"],
        acc["after"],
        details["engine"],
    )
    _check_timing_details(details, AVAILABLE)
    assert exp.compute["epochs"] == 0
    assert 0 < exp.compute["seconds"] < 30

    v2 = si.registry.incumbent("digits")
    spec = {"scheme": "dynamic_int8", "engine": details["engine"]}
    assert (v2.number, v2.strategy, v2.origin) == (2, "quantize", "warm_start")
    assert v2.params == {**BIG, "quantization": spec}
    # the checkpoint is safetensors with int8 weights (opening it parses no pickle)
    with safe_open(str(si.home / v2.checkpoint_path), framework="pt") as f:  # type: ignore[operator]
        assert f.get_tensor("2.weight_int8").dtype is torch.int8
    # reloaded: identical outputs to quantizing the float model again, and to itself
    loaded = si.load("digits")
    x = resolve_task("pattern_recognition").splits().validation.x
    with torch.inference_mode():
        again = quantize.quantize_module(big_digits, spec)(x)
        assert torch.equal(loaded.module(x), again)
        assert torch.equal(si.load("digits").module(x), again)
    # the float version is untouched, and a quantized incumbent is not quantized again
    assert si.registry.version("digits", 1).status is VersionStatus.BACKUP
    again_out = si.loop.improve("digits", cycle=2, strategy=QuantizeStrategy())
    assert again_out.status == "not_applicable" and "already quantized" in again_out.reason


@pytest.mark.parametrize("engine", [e for e in quantize.ENGINES if e != "torch.ao"])
def test_each_other_engine_round_trips_through_the_loop(
    si_big: SelfImprover, big_digits: nn.Module, engine: str, record_property: Any
) -> None:
    if engine not in AVAILABLE:
        pytest.skip(f"{engine}: {quantize.engine_unavailable(engine)}")
    si = si_big
    out = si.loop.improve(
        "digits", cycle=1, strategy=QuantizeStrategy(), params={"engines": [engine]}
    )
    assert out.status == "completed"
    exp = si.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    details = exp.statistics["strategy_details"]
    _report(details, "digits 2048x2 alone", record_property)
    _check_timing_details(details, [engine])
    # Promoted or not (eager torchao is often slower at batch 1 and the latency guard may
    # reject it: a finding), the version's weights are kept and must reload exactly.
    logger.warning("%s alone: %s (%s)", engine, out.decision, out.reason)
    assert out.decision is Decision.PROMOTE or "latency_ms" in out.reason
    spec = {"scheme": "dynamic_int8", "engine": engine}
    v2 = si.registry.version("digits", 2)
    assert v2.params["quantization"] == spec
    assert exp.statistics["before"] / exp.statistics["after"] >= 3.0
    loaded = si.load("digits", 2)
    assert quantize.quantized_engine(loaded.module) == engine
    with safe_open(str(si.home / v2.checkpoint_path), framework="pt") as f:  # type: ignore[operator]
        assert f.get_tensor("2.weight_scale").shape == (BIG["width"], 1)
    x = resolve_task("pattern_recognition").splits().validation.x
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), quantize.quantize_module(big_digits, spec)(x))


def test_engine_latencies_are_reported_for_a_small_mlp(
    improver: SelfImprover, record_property: Any
) -> None:
    """Width 512 x 2: reported, not asserted (int8 may be slower at batch 1 here)."""
    params = {"width": 512, "depth": 2}
    improver.register_model("digits512", "pattern_recognition", _trained_digits(params, 2), params)
    out = improver.loop.improve("digits512", cycle=1, strategy=QuantizeStrategy())
    exp = improver.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    _report(exp.statistics["strategy_details"], "digits 512x2", record_property)
    logger.warning("digits 512x2: %s (%s)", out.decision, out.reason)
    _check_timing_details(exp.statistics["strategy_details"], AVAILABLE)
    assert exp.statistics["before"] / exp.statistics["after"] >= 3.0


# ---------------------------------------------------------------------- strategy alone
def _wine_loaded(improver: SelfImprover) -> Any:
    task = wine_task()
    with torch_seeded(0):
        module = task.build({"width": 16, "depth": 1})
    improver.register_model("wine", task, module, {"width": 16, "depth": 1})
    return improver.load("wine")


def test_apply_leaves_the_incumbent_alone_and_respects_a_short_budget(
    improver: SelfImprover,
) -> None:
    inc = _wine_loaded(improver)
    inc.module.train()  # a mode the strategy must not change either
    before = {k: v.clone() for k, v in inc.module.state_dict().items()}
    ctx = StrategyContext(
        task=inc.task, objective="latency_ms", budget=Budget(1, 0.001), seed=3, params={}
    )
    cand = QuantizeStrategy().apply(inc, ctx)
    assert inc.module.training and not quantize.is_quantized(inc.module)
    assert all(torch.equal(before[k], v) for k, v in inc.module.state_dict().items())
    assert cand.module is not inc.module and quantize.is_quantized(cand.module)
    assert cand.details["timing"]["repeats"] == MIN_REPEATS  # cut to fit the budget
    assert cand.details["timing"]["repeats_wanted"] > MIN_REPEATS
    assert cand.cost.epochs == 0 and cand.origin == "warm_start"


def test_timing_inputs_come_from_the_training_split_seeded() -> None:
    task = wine_task()
    splits = task.splits()
    xs = training_inputs(task, 300, torch.Generator().manual_seed(1))  # more than the split
    assert xs.shape == (300, splits.train.x.shape[1])
    for row in xs:
        assert (splits.train.x == row).all(dim=1).any()
    again = training_inputs(task, 300, torch.Generator().manual_seed(1))
    assert torch.equal(xs, again)


def test_without_torchao_torch_ao_alone_runs_and_the_reason_is_recorded(
    improver: SelfImprover, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulates the optional extra not being installed: importing torchao fails for real.
    inc = _wine_loaded(improver)
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    cand = QuantizeStrategy().apply(inc, _context(inc.task))
    d = cand.details
    assert d["engine"] == "torch.ao" and d["engines_timed"] == ["torch.ao"]
    assert "ModuleNotFoundError" in d["engines_unavailable"]["torchao"]
    assert "selfimprove[quant]" in d["engines_unavailable"]["torchao"]
    assert cand.params["quantization"] == {"scheme": "dynamic_int8", "engine": "torch.ao"}


def test_bad_settings_are_refused_with_the_bad_value_before_anything_is_recorded(
    improver: SelfImprover,
) -> None:
    inc = _wine_loaded(improver)
    with pytest.raises(ConfigError, match=r"engines=\['tensorrt'\] is not one or more"):
        improver.loop.improve(
            "wine", cycle=1, strategy=QuantizeStrategy(), params={"engines": ["tensorrt"]}
        )
    with pytest.raises(ConfigError, match=r"does not understand the settings \['repeat'\]"):
        improver.loop.improve("wine", cycle=1, strategy=QuantizeStrategy(), params={"repeat": 5})
    assert improver.store.list_experiments() == []
    with pytest.raises(ConfigError, match="repeats=1"):
        QuantizeStrategy().apply(inc, _context(inc.task, params={"repeats": 1}))


# ---------------------------------------------------------------------- not applicable
class _Affine(nn.Module):
    """A classifier without nn.Linear: a bare weight matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 13) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T  # (B, 13) x (13, 3) -> (B, 3)


def test_not_applicable_without_linear_layers(improver: SelfImprover) -> None:
    base = wine_task("wine_affine")
    task = SupervisedTask(
        "wine_affine",
        kind="classification",
        splits=base.splits(),
        build=lambda p: _Affine(),
        default_params={},
    )
    with torch_seeded(0):
        improver.register_model("affine", task, task.build({}), {})
    out = improver.loop.improve("affine", cycle=1, strategy=QuantizeStrategy())
    assert out.status == "not_applicable" and "no nn.Linear" in out.reason


def test_not_applicable_when_already_quantized(improver: SelfImprover) -> None:
    task = wine_task()
    with torch_seeded(0):
        module = task.build({"width": 16, "depth": 1})
    spec = {"scheme": "dynamic_int8", "engine": "torch.ao"}
    improver.register_model(
        "wine_q",
        task,
        quantize.quantize_module(module, spec),
        {"width": 16, "depth": 1, "quantization": spec},
    )
    out = improver.loop.improve("wine_q", cycle=1, strategy=QuantizeStrategy())
    assert out.status == "not_applicable" and "already quantized" in out.reason
    assert improver.store.list_experiments() == []


def test_not_applicable_for_an_accuracy_objective(improver: SelfImprover) -> None:
    _wine_loaded(improver)
    out = improver.loop.improve("wine", cycle=1, strategy=QuantizeStrategy(), objective="accuracy")
    assert out.status == "not_applicable"
    assert "latency_ms or size_bytes, not accuracy" in out.reason


def test_strategy_identity() -> None:
    assert (QuantizeStrategy.name, QuantizeStrategy.family) == ("quantize", "optimisation")
    assert QuantizeStrategy.default_objective == "size_bytes"


def test_evaluator_agrees_accuracy_is_kept_on_validation(big_digits: nn.Module) -> None:
    task = resolve_task("pattern_recognition")
    ev = Evaluator()
    before = ev.scores(big_digits, task, "validation").value("accuracy")
    for engine in AVAILABLE:
        q = quantize.quantize_module(big_digits, {"scheme": "dynamic_int8", "engine": engine})
        after = ev.scores(q, task, "validation").value("accuracy")
        logger.warning("%s: validation accuracy %.4f -> %.4f", engine, before, after)
        assert abs(after - before) <= 0.01
