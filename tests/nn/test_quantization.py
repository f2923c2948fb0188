"""The int8 engines and their plain-tensor checkpoint codec, on real tiny models."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

import selfimprove.nn.quantize as quantize
from selfimprove.checkpoints import state_from_bytes
from selfimprove.errors import CheckpointError, StrategyError
from selfimprove.nn.modules import build_module, load_state_, module_state, state_to_bytes
from selfimprove.seeding import torch_seeded
from selfimprove.tasks import SupervisedTask
from tests.conftest import wine_task

AVAILABLE = [e for e in quantize.ENGINES if quantize.engine_unavailable(e) is None]
ENGINE_PARAMS = [
    pytest.param(
        e,
        marks=pytest.mark.skipif(
            e not in AVAILABLE, reason=f"{e}: {quantize.engine_unavailable(e)}"
        ),
    )
    for e in quantize.ENGINES
]


def _spec(engine: str) -> dict[str, str]:
    return {"scheme": "dynamic_int8", "engine": engine}


class _Normed(nn.Module):
    """Linear layers with a float LayerNorm between them and a 1-input Linear on the side."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(13, width), nn.LayerNorm(width), nn.ReLU())
        self.head = nn.Linear(width, 3)
        self.gate = nn.Linear(1, 3, bias=False)  # one input feature: torchao leaves it float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (B, width)
        return self.head(h) + self.gate(x[:, :1])  # (B, 3)


def _normed_task() -> SupervisedTask:
    base = wine_task("wine_normed")
    s = base.splits()
    return SupervisedTask(
        "wine_normed",
        kind="classification",
        splits=s,
        build=lambda p: _Normed(int(p["width"])),
        default_params={"width": 32},
    )


def _trained(task: SupervisedTask, params: Mapping[str, Any]) -> nn.Module:
    with torch_seeded(0):
        module = task.build(params)
        opt = torch.optim.Adam(module.parameters(), lr=1e-2)
        x, y = task.splits().train.x, task.splits().train.y
        for _ in range(30):
            opt.zero_grad()
            task.loss(module(x), y).backward()
            opt.step()
    return module.eval()


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_round_trip_through_safetensors_gives_identical_outputs(engine: str) -> None:
    task = _normed_task()
    params = {"width": 32, "quantization": _spec(engine)}
    q = quantize.quantize_module(_trained(task, {"width": 32}), _spec(engine))
    assert quantize.quantized_engine(q) == engine
    data = state_to_bytes(q)
    # safetensors, not pickle: an 8-byte little-endian header length, then a JSON header
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    assert header["body.0.weight_int8"]["dtype"] == "I8"
    assert header["head.weight_int8"]["dtype"] == "I8"
    assert "body.1.weight" in header  # the float LayerNorm beside them

    with torch_seeded(123):  # a differently initialised shell: every value must come from disk
        rebuilt = build_module(task, params)
    load_state_(rebuilt, state_from_bytes(data, source="test"), what="test")
    x = task.splits().validation.x
    with torch.inference_mode():
        assert torch.equal(q(x), rebuilt(x))
    assert module_state(rebuilt).keys() == module_state(q).keys()


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_quantize_returns_a_copy_close_to_the_float_model(engine: str) -> None:
    task = _normed_task()
    module = _trained(task, {"width": 32})
    before = {k: v.clone() for k, v in module.state_dict().items()}
    q = quantize.quantize_module(module, _spec(engine))
    assert not quantize.is_quantized(module) and quantize.is_quantized(q)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    x = task.splits().validation.x
    with torch.inference_mode():
        ref, out = module(x), q(x)
    assert not torch.equal(ref, out)  # really int8 arithmetic
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_int8_checkpoint_is_about_four_times_smaller(engine: str) -> None:
    with torch_seeded(0):
        module = wine_task().build({"width": 256, "depth": 2})
    q = quantize.quantize_module(module, _spec(engine))
    ratio = len(state_to_bytes(module)) / len(state_to_bytes(q))
    assert 3.0 <= ratio <= 4.0


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_checkpoint_of_another_width_does_not_load(engine: str) -> None:
    task = _normed_task()
    small = quantize.quantize_module(task.build({"width": 16}), _spec(engine))
    big = build_module(task, {"width": 32, "quantization": _spec(engine)})
    with pytest.raises(CheckpointError, match=r"weight_int8|shape"):
        load_state_(big, module_state(small), what="test")


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_missing_or_extra_tensor_is_a_checkpoint_error(engine: str) -> None:
    task = _normed_task()
    q = quantize.quantize_module(task.build({"width": 16}), _spec(engine))
    shell = build_module(task, {"width": 16, "quantization": _spec(engine)})
    state = module_state(q)
    missing = {k: v for k, v in state.items() if k != "head.weight_scale"}
    with pytest.raises(CheckpointError, match=r"head\.weight_scale"):
        quantize.load_quantized_state_(shell, missing)
    with pytest.raises(CheckpointError, match=r"unexpected.*stray"):
        quantize.load_quantized_state_(shell, {**state, "stray": torch.zeros(1)})


def test_engines_checkpoints_differ_in_scale_layout() -> None:
    if "torchao" not in AVAILABLE:
        pytest.skip(f"torchao: {quantize.engine_unavailable('torchao')}")
    module = wine_task().build({"width": 16, "depth": 1})
    ao = module_state(quantize.quantize_module(module, _spec("torch.ao")))
    tao = module_state(quantize.quantize_module(module, _spec("torchao")))
    assert ao["0.weight_scale"].shape == (1,)  # per tensor
    assert tao["0.weight_scale"].shape == (16, 1)  # per output row
    # a torchao checkpoint does not load into a torch.ao structure
    shell = build_module(wine_task(), {"width": 16, "depth": 1, "quantization": _spec("torch.ao")})
    with pytest.raises(CheckpointError, match="weight_scale"):
        load_state_(shell, tao, what="test")


def test_bad_specs_name_the_bad_value() -> None:
    module = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(StrategyError, match=r"'int4'.*dynamic_int8"):
        quantize.quantize_module(module, {"scheme": "int4"})
    with pytest.raises(StrategyError, match="'tensorrt'"):
        quantize.quantize_module(module, {"scheme": "dynamic_int8", "engine": "tensorrt"})
    with pytest.raises(StrategyError, match="'tensorrt'"):
        quantize.engine_unavailable("tensorrt")
    q = quantize.quantize_module(module, _spec("torch.ao"))
    with pytest.raises(StrategyError, match="already quantized"):
        quantize.quantize_module(q, _spec("torch.ao"))


def test_torch_ao_is_available_and_probe_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    assert quantize.engine_unavailable("torch.ao") is None
    assert torch.equal(torch.random.get_rng_state(), state)


def test_without_torchao_the_exact_import_error_is_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Simulates the optional extra not being installed: the import itself fails.
    monkeypatch.setitem(sys.modules, "torchao", None)
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    reason = quantize.engine_unavailable("torchao")
    assert reason is not None
    assert "ModuleNotFoundError" in reason and "torchao.quantization" in reason
    assert "selfimprove[quant]" in reason
    with pytest.raises(StrategyError, match="torchao"):
        quantize.quantize_module(nn.Sequential(nn.Linear(4, 2)), _spec("torchao"))
    assert quantize.engine_unavailable("torch.ao") is None
