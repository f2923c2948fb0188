"""Transforms that return a new module: rebuild from params, int8 quantization, MLP surgery
(:mod:`selfimprove.nn.mlp`: remove hidden units, refit, score), function-preserving growth
(:mod:`selfimprove.nn.mlp_growth`: widen, deepen), checkpoint bytes of a module,
and (in :mod:`selfimprove.nn.transformer`) the attention-head toolkit.

Nothing here knows about tasks, the store or the loop: a task is any object with a ``build``
method (:class:`Builder`).
"""

from __future__ import annotations

from selfimprove.nn.mlp import (
    ACTIVATIONS,
    RIDGE,
    MLPStructure,
    cut_mlp,
    parse_mlp,
    prune_mlp,
    refit_next_layer,
    unit_importance,
)
from selfimprove.nn.mlp_growth import (
    IDEMPOTENT_ACTIVATIONS,
    can_deepen,
    deepen_mlp,
    widen_mlp,
)
from selfimprove.nn.modules import (
    TRANSFORM_KEYS,
    Builder,
    arch_params,
    build_module,
    checkpoint_bytes,
    load_state_,
    module_state,
    state_to_bytes,
)
from selfimprove.nn.quantize import (
    ENGINES,
    SCHEME,
    engine_unavailable,
    is_quantized,
    load_quantized_state_,
    quantize_module,
    quantized_engine,
    quantized_state,
)
from selfimprove.nn.runtime import (
    nominal_latency_ms,
    single_thread,
)

__all__ = [
    "ACTIVATIONS",
    "ENGINES",
    "IDEMPOTENT_ACTIVATIONS",
    "RIDGE",
    "SCHEME",
    "TRANSFORM_KEYS",
    "Builder",
    "MLPStructure",
    "arch_params",
    "build_module",
    "can_deepen",
    "checkpoint_bytes",
    "cut_mlp",
    "deepen_mlp",
    "engine_unavailable",
    "is_quantized",
    "load_quantized_state_",
    "load_state_",
    "module_state",
    "nominal_latency_ms",
    "parse_mlp",
    "prune_mlp",
    "quantize_module",
    "quantized_engine",
    "quantized_state",
    "refit_next_layer",
    "single_thread",
    "state_to_bytes",
    "unit_importance",
    "widen_mlp",
]
