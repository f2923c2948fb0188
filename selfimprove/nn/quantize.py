"""Dynamic int8 quantization of ``nn.Linear`` layers, and its plain-tensor checkpoint codec.

Scheme ``dynamic_int8``: weights are stored as int8 once; activations are quantized to int8 on
the fly at every call; the matmul accumulates in int32 and is rescaled to float. Two engines:

- ``"torch.ao"``: ``torch.ao.quantization.quantize_dynamic`` (deprecated in torch 2.13 but
  working; imported defensively). Each Linear becomes a ``torch.ao.nn.quantized.dynamic.Linear``
  with per-tensor affine int8 weights (one scale, one zero point) and fbgemm kernels.
- ``"torchao"``: ``torchao.quantization.quantize_`` with
  ``Int8DynamicActivationInt8WeightConfig`` (the optional extra ``selfimprove[quant]``). Each
  Linear stays an ``nn.Linear`` whose weight is a ``torchao`` ``Int8Tensor`` subclass: symmetric
  per-row (per output channel) int8 weights, a float32 scale and an int8 zero point per row;
  activations are quantized per token (symmetric) and multiplied with ``torch._int_mm``. Chosen
  over ``Int8WeightOnlyConfig`` because it is the same scheme as the ``torch.ao`` engine (int8
  activations, int8 compute), so the two engines are compared like for like; weight-only keeps
  float activations and dequantizes the weight inside every matmul. Two choices of ours:
  ``set_inductor_config=False`` (the default would change torch's global inductor settings, and
  nothing here is compiled), and Linear layers with a single input feature are left in float
  (torchao 0.18 fails on them: ``RuntimeError: shape '[N, 1]' is invalid for input of size 1``
  in ``choose_qparams_affine``).

  Measured on this kind of machine (2-core Xeon with AVX512-VNNI and AMX, torch 2.13 CPU,
  torchao 0.18, eager mode, one thread): torchao runs and is numerically sound, but it is built
  for ``torch.compile``; in eager mode the tensor-subclass dispatch and the per-call activation
  quantization in Python cost about 0.15-0.2 ms per layer. On the digits MLP at 512 x 2 it was
  about 7x slower than float and 4x slower than ``torch.ao`` at batch 1; at 2048 x 2 it beat
  float at batch 64 (about 1.4-2x) but not ``torch.ao``. :class:`selfimprove.strategies.
  _quantize.QuantizeStrategy` times both engines and keeps the faster. Nothing is compiled
  here, because a version reloaded from its checkpoint runs in eager mode and that is what the
  judge must measure.

Without torchao (or where it cannot run), :func:`engine_unavailable` gives the exact reason and
only ``torch.ao`` is used.

Checkpoints: a quantized module's state is stored as plain tensors so that checkpoints stay
safetensors (no pickled packed params, no tensor subclasses). Per quantized layer ``L``:
``L.weight_int8`` (int8, out × in), ``L.weight_scale``, ``L.weight_zero_point`` and ``L.bias``
(float); ``torch.ao`` layers hold one float64 scale and one int64 zero point, ``torchao`` layers
a float32 scale and an int8 zero point per output row (out × 1). Every other tensor (float
layers beside them) is stored under its usual state-dict key. :func:`quantize_module` rebuilds
the structure (the engine is in the version's params); :func:`load_quantized_state_` fills it,
and the reloaded module gives bit-identical outputs.
"""

from __future__ import annotations

import copy
import importlib
import logging
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from selfimprove.errors import CheckpointError, StrategyError
from selfimprove.seeding import torch_seeded

__all__ = [
    "ENGINES",
    "SCHEME",
    "engine_unavailable",
    "is_quantized",
    "load_quantized_state_",
    "quantize_module",
    "quantized_engine",
    "quantized_state",
]


ENGINES = ("torch.ao", "torchao")
SCHEME = "dynamic_int8"
_INT8, _SCALE, _ZERO_POINT, _BIAS = "weight_int8", "weight_scale", "weight_zero_point", "bias"
_TORCHAO_MODULE = "torchao.quantization"


def _key(prefix: str, attr: str) -> str:
    return f"{prefix}.{attr}" if prefix else attr


def _under(key: str, prefix: str) -> bool:
    """Whether state-dict ``key`` belongs to the submodule called ``prefix`` ("" is the root)."""
    return prefix == "" or key == prefix or key.startswith(prefix + ".")


# ---------------------------------------------------------------------- engines
def _dynamic_linear_type() -> type[nn.Module] | None:
    try:
        from torch.ao.nn.quantized.dynamic import Linear as DynLinear
    except ImportError:  # pragma: no cover - removed in a future torch
        return None
    return DynLinear


def _import_torchao() -> Any:
    """The ``torchao.quantization`` module.

    Raises:
        StrategyError: torchao is not installed or fails to import (the exact error is kept).
    """
    # torchao's import logs notices through torch's loggers (a pytree deprecation, missing
    # optional kernels); they say nothing about our use, so they are held back to errors.
    noisy = [logging.getLogger(n) for n in ("torch.utils._pytree", "torchao")]
    levels = [lg.level for lg in noisy]
    try:
        for lg in noisy:
            lg.setLevel(logging.ERROR)
        return importlib.import_module(_TORCHAO_MODULE)
    except Exception as exc:  # ImportError, or anything torchao raises while importing
        raise StrategyError(
            f"engine 'torchao' is unavailable: {type(exc).__name__}: {exc}; install the "
            "optional extra (pip install 'selfimprove[quant]') or use engine 'torch.ao'."
        ) from None
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)


def _loaded_int8_tensor_type() -> type | None:
    """torchao's ``Int8Tensor`` if torchao is already imported (never imports it: no module can
    hold a torchao tensor before torchao is imported)."""
    mod = sys.modules.get(_TORCHAO_MODULE)
    t = getattr(mod, "Int8Tensor", None) if mod is not None else None
    return t if isinstance(t, type) else None


def _torchao_filter(module: nn.Module, fqn: str) -> bool:
    # torchao 0.18 cannot quantize a Linear with one input feature (see the module docstring).
    return isinstance(module, nn.Linear) and module.in_features >= 2


def _quantize_torchao(module: nn.Module) -> nn.Module:
    tq = _import_torchao()
    out = copy.deepcopy(module).eval()
    config = tq.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    tq.quantize_(out, config, filter_fn=_torchao_filter)
    return out


def _quantize_torch_ao(module: nn.Module) -> nn.Module:
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:  # pragma: no cover
        raise StrategyError("torch.ao.quantization is not available in this torch.") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice, once per call
        out: nn.Module = quantize_dynamic(
            copy.deepcopy(module).eval(), {nn.Linear}, dtype=torch.qint8
        )
    return out


def engine_unavailable(engine: str) -> str | None:
    """Why ``engine`` cannot run here, or ``None`` when it can.

    The check is real: the engine quantizes a small Linear and runs it at batch 1 and 2.

    Args:
        engine: One of :data:`ENGINES`.

    Returns:
        ``None``, or the reason with the exact error.

    Raises:
        StrategyError: ``engine`` is not one of :data:`ENGINES`.
    """
    if engine not in ENGINES:
        raise StrategyError(f"unknown quantization engine {engine!r}; available: {ENGINES}.")
    with torch_seeded(0):  # the probe's init must not draw from the caller's generator
        probe = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    try:
        q = quantize_module(probe, {"scheme": SCHEME, "engine": engine})
        with torch.inference_mode():
            for batch in (1, 2):
                q(torch.ones(batch, 8))
    except StrategyError as exc:
        return str(exc)
    except Exception as exc:  # the engine imported but cannot run on this machine
        return f"engine {engine!r} fails on this machine: {type(exc).__name__}: {exc}"
    return None


def quantize_module(module: nn.Module, spec: Mapping[str, Any]) -> nn.Module:
    """A quantized **copy** of ``module`` (the input is left alone).

    Args:
        module: A float model.
        spec: ``{"scheme": "dynamic_int8", "engine": "torch.ao" | "torchao"}`` (engine defaults
            to ``"torch.ao"``).

    Returns:
        The quantized copy, in eval mode.

    Raises:
        StrategyError: Unknown scheme or engine, the engine is not available, or ``module`` is
            already quantized.
    """
    scheme, engine = spec.get("scheme"), spec.get("engine", "torch.ao")
    if scheme != SCHEME:
        raise StrategyError(f"unknown quantization scheme {scheme!r}; use {SCHEME!r}.")
    if engine not in ENGINES:
        raise StrategyError(f"unknown quantization engine {engine!r}; available: {ENGINES}.")
    if is_quantized(module):
        raise StrategyError("this module is already quantized; quantize its float version.")
    if engine == "torchao":
        return _quantize_torchao(module)
    return _quantize_torch_ao(module)


# ---------------------------------------------------------------------- inspection
def _quantized_layers(module: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """``(name, engine, layer)`` of every quantized Linear in ``module``."""
    dyn = _dynamic_linear_type()
    int8_tensor = _loaded_int8_tensor_type()
    found: list[tuple[str, str, nn.Module]] = []
    for name, sub in module.named_modules():
        if dyn is not None and isinstance(sub, dyn):
            found.append((name, "torch.ao", sub))
        elif (
            int8_tensor is not None
            and isinstance(sub, nn.Linear)
            and isinstance(sub._parameters.get("weight"), int8_tensor)
        ):
            found.append((name, "torchao", sub))
    return found


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` holds dynamically quantized Linear layers (either engine).

    Args:
        module: Any module.

    Returns:
        ``True`` if at least one Linear layer is quantized.
    """
    return bool(_quantized_layers(module))


def quantized_engine(module: nn.Module) -> str | None:
    """The engine that quantized ``module`` (``None`` for a float module).

    Raises:
        StrategyError: The module mixes layers of both engines.
    """
    engines = {engine for _, engine, _ in _quantized_layers(module)}
    if len(engines) > 1:
        raise StrategyError(f"module mixes quantization engines {sorted(engines)}.")
    return next(iter(engines), None)


# ---------------------------------------------------------------------- checkpoint codec
def _torchao_parts(name: str, layer: nn.Module) -> dict[str, torch.Tensor]:
    w: Any = layer._parameters["weight"]
    extras = ("act_quant_scale", "act_quant_zero_point", "act_pre_scale")
    if any(getattr(w, a, None) is not None for a in extras):
        raise CheckpointError(
            f"layer {name or '<root>'}: only dynamic int8 torchao weights are stored "
            "(static activation scales or pre-scales found)."
        )
    parts = {_INT8: w.qdata, _SCALE: w.scale}
    if w.zero_point is not None:
        parts[_ZERO_POINT] = w.zero_point
    return parts


def quantized_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors that fully describe a quantized module (safetensors-compatible).

    Args:
        module: A module from :func:`quantize_module` (either engine).

    Returns:
        Contiguous, unshared plain tensors (see the module docstring for the keys).

    Raises:
        CheckpointError: A layer holds a quantization this codec does not store.
    """
    state: dict[str, torch.Tensor] = {}
    prefixes: list[str] = []
    for name, engine, sub in _quantized_layers(module):
        q: Any = sub
        if engine == "torch.ao":
            w = q.weight()
            if w.qscheme() != torch.per_tensor_affine:
                raise CheckpointError(
                    f"layer {name or '<root>'}: only per-tensor int8 weights are stored."
                )
            parts = {
                _INT8: w.int_repr(),
                _SCALE: torch.tensor([w.q_scale()], dtype=torch.float64),
                _ZERO_POINT: torch.tensor([w.q_zero_point()]),
            }
            bias = q.bias()
        else:
            parts = _torchao_parts(name, sub)
            bias = q.bias
        if bias is not None:
            parts[_BIAS] = bias
        for attr, tensor in parts.items():
            state[_key(name, attr)] = tensor.detach().contiguous().clone()
        prefixes.append(name)
    for key, value in module.state_dict().items():
        if not any(_under(key, p) for p in prefixes) and isinstance(value, torch.Tensor):
            state[key] = value.detach().contiguous().clone()
    return state


def _take(
    state: Mapping[str, torch.Tensor], key: str, like: torch.Tensor, used: set[str]
) -> torch.Tensor:
    """``state[key]``, checked to have the shape and dtype of ``like``."""
    try:
        value = state[key]
    except KeyError:
        raise CheckpointError(f"quantized checkpoint lacks {key!r}.") from None
    if value.shape != like.shape or value.dtype != like.dtype:
        raise CheckpointError(
            f"quantized checkpoint tensor {key!r} is {value.dtype} {tuple(value.shape)}, but the "
            f"architecture needs {like.dtype} {tuple(like.shape)}; check the version's params."
        )
    used.add(key)
    return value


def _load_torch_ao_layer(
    name: str, layer: nn.Module, state: Mapping[str, torch.Tensor], used: set[str]
) -> None:
    q: Any = layer
    w = q.weight()
    int8 = _take(state, _key(name, _INT8), w.int_repr(), used)
    scale = float(_take(state, _key(name, _SCALE), torch.zeros(1, dtype=torch.float64), used)[0])
    zp = int(_take(state, _key(name, _ZERO_POINT), torch.zeros(1, dtype=torch.int64), used)[0])
    qweight = torch._make_per_tensor_quantized_tensor(int8, scale, zp)
    bias = None
    if q.bias() is not None:
        bias = _take(state, _key(name, _BIAS), q.bias().detach(), used)
    q.set_weight_bias(qweight, bias)


def _load_torchao_layer(
    name: str, layer: nn.Module, state: Mapping[str, torch.Tensor], used: set[str]
) -> None:
    # The layer was built by quantize_module (random weights): its Int8Tensor already has the
    # right block size and activation settings, so only its plain tensors are overwritten.
    parts = _torchao_parts(name, layer)
    with torch.no_grad():
        for attr, dest in parts.items():
            dest.copy_(_take(state, _key(name, attr), dest, used))
        bias = layer._parameters.get("bias")
        if bias is not None:
            bias.copy_(_take(state, _key(name, _BIAS), bias.detach(), used))


def load_quantized_state_(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Fill a quantized module (from :func:`quantize_module`) from :func:`quantized_state`.

    Args:
        module: Built with the same params (same engine) as the module that was saved.
        state: The saved plain tensors.

    Raises:
        CheckpointError: A tensor is missing, unexpected, or has the wrong shape or dtype.
    """
    used: set[str] = set()
    prefixes: list[str] = []
    for name, engine, sub in _quantized_layers(module):
        if engine == "torch.ao":
            _load_torch_ao_layer(name, sub, state, used)
        else:
            _load_torchao_layer(name, sub, state, used)
        prefixes.append(name)
    # Float layers beside the quantized ones (normalisation, embeddings...): copy tensor by
    # tensor, since a quantized layer's own loader would demand its packed keys.
    expected = {
        k
        for k, v in module.state_dict().items()
        if isinstance(v, torch.Tensor) and not any(_under(k, p) for p in prefixes)
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
            if dest.shape != value.shape:
                raise CheckpointError(
                    f"checkpoint tensor {key!r} has shape {tuple(value.shape)}, but the "
                    f"architecture needs {tuple(dest.shape)}; check the version's params."
                )
            dest.copy_(value)
