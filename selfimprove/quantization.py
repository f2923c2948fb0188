"""Dynamic int8 quantization of ``nn.Linear`` layers, and its plain-tensor checkpoint codec.

Engines: ``torch.ao`` (``torch.ao.quantization.quantize_dynamic``; deprecated in torch 2.13 but
working, imported defensively). A quantized module's state is stored as plain tensors (int8
weights, scales, zero points, float biases) so that checkpoints stay safetensors: no pickled
packed params. :func:`quantize_module` rebuilds the structure; :func:`load_quantized_state_`
fills it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from selfimprove.errors import CheckpointError, StrategyError

__all__ = [
    "ENGINES",
    "is_quantized",
    "load_quantized_state_",
    "quantize_module",
    "quantized_state",
]

ENGINES = ("torch.ao",)
_INT8 = ".weight_int8"


def _dynamic_linear_type() -> type[nn.Module] | None:
    try:
        from torch.ao.nn.quantized.dynamic import Linear as DynLinear
    except ImportError:  # pragma: no cover - removed in a future torch
        return None
    return DynLinear


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` holds dynamically quantized Linear layers."""
    dyn = _dynamic_linear_type()
    return dyn is not None and any(isinstance(m, dyn) for m in module.modules())


def quantize_module(module: nn.Module, spec: Mapping[str, Any]) -> nn.Module:
    """A quantized **copy** of ``module`` (the input is left alone).

    Args:
        module: A float model.
        spec: ``{"scheme": "dynamic_int8", "engine": "torch.ao"}``.

    Raises:
        StrategyError: Unknown scheme or engine, or the engine is not available.
    """
    scheme, engine = spec.get("scheme"), spec.get("engine", "torch.ao")
    if scheme != "dynamic_int8":
        raise StrategyError(f"unknown quantization scheme {scheme!r}; use 'dynamic_int8'.")
    if engine != "torch.ao":
        raise StrategyError(f"unknown quantization engine {engine!r}; available: {ENGINES}.")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:  # pragma: no cover
        raise StrategyError("torch.ao.quantization is not available in this torch.") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice, once per call
        out = quantize_dynamic(copy.deepcopy(module).eval(), {nn.Linear}, dtype=torch.qint8)
    return out


def quantized_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors that fully describe a quantized module (safetensors-compatible)."""
    dyn = _dynamic_linear_type()
    state: dict[str, torch.Tensor] = {}
    quantized_prefixes = []
    for name, sub in module.named_modules():
        if dyn is not None and isinstance(sub, dyn):
            q: Any = sub
            w = q.weight()
            if w.qscheme() != torch.per_tensor_affine:
                raise CheckpointError(f"layer {name}: only per-tensor int8 weights are stored.")
            state[name + _INT8] = w.int_repr().contiguous().clone()
            state[name + ".weight_scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
            state[name + ".weight_zero_point"] = torch.tensor([w.q_zero_point()])
            bias = q.bias()
            if bias is not None:
                state[name + ".bias"] = bias.detach().contiguous().clone()
            quantized_prefixes.append(name + ".")
    for key, value in module.state_dict().items():
        if not any(key.startswith(p) for p in quantized_prefixes) and isinstance(
            value, torch.Tensor
        ):
            state[key] = value.detach().contiguous().clone()
    return state


def load_quantized_state_(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Fill a quantized module (from :func:`quantize_module`) from :func:`quantized_state`."""
    dyn = _dynamic_linear_type()
    used: set[str] = set()
    prefixes: list[str] = []
    for name, sub in module.named_modules():
        if dyn is not None and isinstance(sub, dyn):
            try:
                int8 = state[name + _INT8]
                scale = float(state[name + ".weight_scale"][0])
                zp = int(state[name + ".weight_zero_point"][0])
            except KeyError as exc:
                raise CheckpointError(f"quantized checkpoint lacks {exc.args[0]!r}.") from None
            qweight = torch._make_per_tensor_quantized_tensor(int8, scale, zp)
            bias = state.get(name + ".bias")
            target: Any = sub
            target.set_weight_bias(qweight, bias)
            prefixes.append(name + ".")
            used |= {name + _INT8, name + ".weight_scale", name + ".weight_zero_point"}
            if bias is not None:
                used.add(name + ".bias")
    # Float layers beside the quantized ones (normalisation, embeddings...): copy tensor by
    # tensor, since a quantized layer's own loader would demand its packed keys.
    expected = {
        k
        for k, v in module.state_dict().items()
        if isinstance(v, torch.Tensor) and not any(k.startswith(p) for p in prefixes)
    }
    rest = {k: v for k, v in state.items() if k not in used}
    if set(rest) != expected:
        raise CheckpointError(
            "quantized checkpoint does not fit: missing "
            f"{sorted(expected - set(rest))}, unexpected {sorted(set(rest) - expected)}."
        )
    with torch.no_grad():
        for key, value in rest.items():
            dest: torch.Tensor
            try:
                dest = module.get_parameter(key)
            except AttributeError:
                dest = module.get_buffer(key)
            dest.copy_(value)
