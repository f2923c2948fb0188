"""Structural head surgery: remove heads, add heads, rebuild uneven models.

Hand-written because transformers 5 dropped ``prune_heads``. Every function returns a **new**
model and leaves its input alone. The per-layer layouts live in the families (:mod:`.family`:
GPT-2's fused ``c_attn`` in :mod:`._gpt2`, Llama's q/k/v/o projections in :mod:`._llama`); a
"head" here is a family's unit (a key/value group for Llama, q/k/v rows and ``o_proj`` columns
sliced together). A layer keeps at least one unit.

Growth appends units at the end of a layer. A new unit's q, k, v weights are drawn (seeded)
with the standard deviation of the layer's existing q, k, v weights, its biases are zero, and its
output-projection slice is **zero**: its output adds nothing, so the model computes the same
function at the moment of growth (up to float summation order), and it starts to matter as that
slice learns (it gets a gradient at once; q, k, v follow).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.transformer.family import (
    AttentionFamily,
    family_named,
    family_of,
    family_of_config,
)
from selfimprove.nn.transformer.hf import quiet
from selfimprove.seeding import derive_seed

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = [
    "build_gpt2",
    "build_model",
    "grow_heads",
    "grown_head_masks",
    "model_spec",
    "prune_heads",
]


def _check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise ConfigError(f"layer {layer} out of range [0, {n_layers}).")


def prune_heads(model: GPT2LMHeadModel, remove: Mapping[int, Sequence[int]]) -> GPT2LMHeadModel:
    """A **new** model without the listed heads (the input is left alone).

    Args:
        model: A GPT-2 or Llama model (Llama: the positions are key/value groups).
        remove: Layer -> positions of the heads to remove in that layer (current positions,
            ``0 .. h_l - 1``). Kept heads keep their order.

    Returns:
        The smaller model; its logits equal ``model``'s with those heads gated to zero.

    Raises:
        ConfigError: Bad layer or head index, a repeated head, or a layer left with no head.
    """
    family = family_of(model)
    counts = _counts(family, model)
    for layer, heads in remove.items():
        _check_layer(layer, len(counts))
        idx = [int(i) for i in heads]
        if len(set(idx)) != len(idx):
            raise ConfigError(f"layer {layer}: a head is listed twice in {idx}.")
        bad = [i for i in idx if not 0 <= i < counts[layer]]
        if bad:
            raise ConfigError(f"layer {layer}: heads {bad} out of range [0, {counts[layer]}).")
        if len(idx) >= counts[layer]:
            raise ConfigError(
                f"layer {layer} must keep at least one of its {counts[layer]} heads, "
                f"but removing {sorted(idx)} would leave none."
            )
    new = copy.deepcopy(model)
    for layer, attn in enumerate(family.attention_modules(new)):
        gone = {int(i) for i in remove.get(layer, ())}
        if gone:
            family.keep_units_(attn, [i for i in range(counts[layer]) if i not in gone])
    return new


def grow_heads(
    model: GPT2LMHeadModel, add: Mapping[int, int], *, seed: int
) -> tuple[GPT2LMHeadModel, dict[int, list[int]]]:
    """A **new** model with ``add[layer]`` function-preserving heads appended to each layer.

    Args:
        model: A GPT-2 or Llama model (left alone).
        add: Layer -> number of heads (units) to add (0 allowed).
        seed: Seeds the new q, k, v weights (one generator per layer, from ``(seed, layer)``).

    Returns:
        The grown model, and layer -> positions of the new heads in it.

    Raises:
        ConfigError: Bad layer index or a negative count.
    """
    family = family_of(model)
    counts = _counts(family, model)
    for layer, n in add.items():
        _check_layer(layer, len(counts))
        if n < 0:
            raise ConfigError(f"layer {layer}: cannot add {n} heads; use a count >= 0.")
    new = copy.deepcopy(model)
    positions: dict[int, list[int]] = {}
    for layer, attn in enumerate(family.attention_modules(new)):
        n = int(add.get(layer, 0))
        if n == 0:
            continue
        gen = torch.Generator().manual_seed(derive_seed("grow_heads", seed, layer) % 2**63)
        family.append_units_(attn, n, gen)
        positions[layer] = list(range(counts[layer], counts[layer] + n))
    return new, positions


def grown_head_masks(
    model: GPT2LMHeadModel, new_heads: Mapping[int, Sequence[int]]
) -> dict[nn.Parameter, torch.Tensor]:
    """Masks (1 on the listed heads' slices, 0 elsewhere) of the parameters that hold them,
    e.g. to train only the heads :func:`grow_heads` added.

    Args:
        model: A GPT-2 or Llama model.
        new_heads: Layer -> positions of the heads (units).

    Returns:
        Parameter -> mask of its shape (only parameters holding a listed head).

    Raises:
        ConfigError: A layer or position out of range.
    """
    family = family_of(model)
    attns = family.attention_modules(model)
    masks: dict[nn.Parameter, torch.Tensor] = {}
    for layer, positions in new_heads.items():
        _check_layer(layer, len(attns))
        if not positions:
            continue
        units = family.units(attns[layer])
        bad = [int(i) for i in positions if not 0 <= int(i) < units]
        if bad:
            raise ConfigError(f"layer {layer}: heads {bad} out of range [0, {units}).")
        masks.update(family.unit_masks(attns[layer], [int(i) for i in positions]))
    return masks


def model_spec(model: GPT2LMHeadModel) -> dict[str, Any]:
    """Plain data that rebuilds ``model``'s architecture: its config (whose ``model_type``
    names the family) and heads (units) per layer."""
    config = model.config.to_dict()
    return {"config": config, "heads_per_layer": _counts(family_of(model), model)}


def build_model(spec: Mapping[str, Any]) -> GPT2LMHeadModel:
    """An (untrained) model of the architecture in ``spec`` (from :func:`model_spec`), of the
    family its config's ``model_type`` names (GPT-2 when it names none).

    Layers with another head count than the config's are resized; the weights are meant to be
    loaded afterwards. Initialisation draws from a forked RNG, so building a model never
    changes the caller's random state.

    Raises:
        ConfigError: ``spec`` lacks ``config`` or ``heads_per_layer``, they disagree, or the
            family is not supported.
    """
    try:
        config_dict = dict(spec["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"a model spec needs 'config' and 'heads_per_layer' (from model_spec): {exc}"
        ) from None
    family = family_of_config({"model_type": "gpt2", **config_dict})
    return _build(family, spec)


def build_gpt2(spec: Mapping[str, Any]) -> GPT2LMHeadModel:
    """An (untrained) GPT-2 of the architecture in ``spec`` (see :func:`build_model`).

    Raises:
        ConfigError: ``spec`` lacks ``config`` or ``heads_per_layer``, or they disagree.
    """
    return _build(family_named("gpt2"), spec)


def _counts(family: AttentionFamily, model: nn.Module) -> list[int]:
    return [family.units(attn) for attn in family.attention_modules(model)]


def _build(family: AttentionFamily, spec: Mapping[str, Any]) -> GPT2LMHeadModel:
    try:
        config_dict = dict(spec["config"])
        heads = [int(h) for h in spec["heads_per_layer"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"a model spec needs 'config' and 'heads_per_layer' (from model_spec): {exc}"
        ) from None
    with quiet():
        config = family.config_class().from_dict(config_dict)  # type: ignore[attr-defined]
    n_layers = int(config.num_hidden_layers)
    if len(heads) != n_layers:
        raise ConfigError(
            f"heads_per_layer has {len(heads)} entries but the config has {n_layers} layers."
        )
    if min(heads) < 1:
        raise ConfigError(f"every layer needs at least one head, but got {heads}.")
    with torch.random.fork_rng(devices=[]), quiet():
        torch.manual_seed(0)
        model: GPT2LMHeadModel = family.model_class()(config)
    for layer, attn in enumerate(family.attention_modules(model)):
        if heads[layer] != family.units(attn):
            family.resize_units_(attn, heads[layer])
    model.eval()
    return model
