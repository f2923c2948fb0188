"""Structural head surgery on GPT-2: remove heads, add heads, rebuild uneven models.

Hand-written because transformers 5 dropped ``prune_heads`` for GPT-2. Every function returns a
**new** model and leaves its input alone.

Layout (transformers 5.23, ``GPT2Attention``). ``c_attn`` and ``c_proj`` are ``Conv1D`` layers
whose weights are stored ``(in, out)``:

- ``c_attn.weight`` is ``(E, 3 * h * d)``: the q, k and v blocks side by side, each ``(E, h*d)``
  with head ``i`` in columns ``i*d : (i+1)*d``; its bias is ``(3 * h * d,)`` in the same order;
- ``c_proj.weight`` is ``(h * d, E)``: head ``i`` owns rows ``i*d : (i+1)*d``; its bias ``(E,)``
  belongs to no head and is kept whole.

``forward`` splits ``c_attn``'s output with ``split(self.split_size, dim=2)`` and reshapes with
``view(..., -1, self.head_dim)``, and the attention scale is precomputed from ``head_dim``. So a
layer with ``h`` heads runs when ``split_size = h * d`` and ``num_heads = h``, with ``head_dim``
unchanged: layers may hold different numbers of heads. A layer keeps at least one head (a
zero-width ``view(..., -1, d)`` is ambiguous and fails).

Growth appends heads at the end of a layer. A new head's q, k, v weights are drawn (seeded)
with the standard deviation of the layer's existing q, k, v weights, its biases are zero, and its
``c_proj`` rows are **zero**: its output adds nothing, so the model computes the same function
at the moment of growth (up to float summation order), and it starts to matter as its ``c_proj``
rows learn (they get a gradient at once; q, k, v follow).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.transformer.gates import attention_blocks, heads_per_layer
from selfimprove.nn.transformer.hf import new_config, new_model, quiet
from selfimprove.seeding import derive_seed

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["build_gpt2", "grow_heads", "model_spec", "prune_heads"]


def _head_tensors(attn: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer's per-head weights as views: qkv ``(E, 3, h, d)``, qkv bias ``(3, h, d)``,
    proj ``(h, d, E)``."""
    h, d = int(attn.num_heads), int(attn.head_dim)
    w = attn.c_attn.weight.detach()  # (E, 3*h*d)
    b = attn.c_attn.bias.detach()  # (3*h*d,)
    p = attn.c_proj.weight.detach()  # (h*d, E)
    return w.view(w.shape[0], 3, h, d), b.view(3, h, d), p.view(h, d, p.shape[1])


def _set_heads_(attn: Any, qkv: torch.Tensor, qkv_bias: torch.Tensor, proj: torch.Tensor) -> None:
    """Replace a layer's head weights in place (only ever called on a fresh copy or build).

    Args:
        attn: The ``GPT2Attention`` to change.
        qkv: ``(E, 3, h, d)``.
        qkv_bias: ``(3, h, d)``.
        proj: ``(h, d, E)``.
    """
    e, _, h, d = qkv.shape
    attn.c_attn.weight = nn.Parameter(qkv.reshape(e, 3 * h * d).contiguous().clone())
    attn.c_attn.bias = nn.Parameter(qkv_bias.reshape(3 * h * d).contiguous().clone())
    attn.c_attn.nf = 3 * h * d
    attn.c_proj.weight = nn.Parameter(proj.reshape(h * d, proj.shape[-1]).contiguous().clone())
    attn.c_proj.nx = h * d
    attn.num_heads = h
    attn.split_size = h * d


def _check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise ConfigError(f"layer {layer} out of range [0, {n_layers}).")


def prune_heads(model: GPT2LMHeadModel, remove: Mapping[int, Sequence[int]]) -> GPT2LMHeadModel:
    """A **new** model without the listed heads (the input is left alone).

    Args:
        model: A GPT-2 model.
        remove: Layer -> positions of the heads to remove in that layer (current positions,
            ``0 .. h_l - 1``). Kept heads keep their order.

    Returns:
        The smaller model; its logits equal ``model``'s with those heads gated to zero.

    Raises:
        ConfigError: Bad layer or head index, a repeated head, or a layer left with no head.
    """
    counts = heads_per_layer(model)
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
    for layer, attn in enumerate(attention_blocks(new)):
        gone = {int(i) for i in remove.get(layer, ())}
        if not gone:
            continue
        keep = torch.tensor([i for i in range(counts[layer]) if i not in gone])
        qkv, bias, proj = _head_tensors(attn)
        _set_heads_(attn, qkv[:, :, keep], bias[:, keep], proj[keep])
    return new


def grow_heads(
    model: GPT2LMHeadModel, add: Mapping[int, int], *, seed: int
) -> tuple[GPT2LMHeadModel, dict[int, list[int]]]:
    """A **new** model with ``add[layer]`` function-preserving heads appended to each layer.

    Args:
        model: A GPT-2 model (left alone).
        add: Layer -> number of heads to add (0 allowed).
        seed: Seeds the new q, k, v weights (one generator per layer, from ``(seed, layer)``).

    Returns:
        The grown model, and layer -> positions of the new heads in it.

    Raises:
        ConfigError: Bad layer index or a negative count.
    """
    counts = heads_per_layer(model)
    for layer, n in add.items():
        _check_layer(layer, len(counts))
        if n < 0:
            raise ConfigError(f"layer {layer}: cannot add {n} heads; use a count >= 0.")
    new = copy.deepcopy(model)
    positions: dict[int, list[int]] = {}
    for layer, attn in enumerate(attention_blocks(new)):
        n = int(add.get(layer, 0))
        if n == 0:
            continue
        qkv, bias, proj = _head_tensors(attn)  # (E, 3, h, d), (3, h, d), (h, d, E)
        e, _, h, d = qkv.shape
        gen = torch.Generator().manual_seed(derive_seed("grow_heads", seed, layer) % 2**63)
        std = qkv.float().std(dim=(0, 2, 3)).cpu()  # (3,): one scale each for q, k and v
        fresh = torch.randn(e, 3, n, d, generator=gen) * std.view(1, 3, 1, 1)
        fresh = fresh.to(device=qkv.device, dtype=qkv.dtype)
        qkv_new = torch.cat([qkv, fresh], dim=2)  # (E, 3, h+n, d)
        bias_new = torch.cat([bias, bias.new_zeros(3, n, d)], dim=1)  # (3, h+n, d)
        proj_new = torch.cat([proj, proj.new_zeros(n, d, proj.shape[-1])], dim=0)  # (h+n, d, E)
        _set_heads_(attn, qkv_new, bias_new, proj_new)
        positions[layer] = list(range(h, h + n))
    return new, positions


def model_spec(model: GPT2LMHeadModel) -> dict[str, Any]:
    """Plain data that rebuilds ``model``'s architecture: its config and heads per layer."""
    config = model.config.to_dict()
    return {"config": config, "heads_per_layer": heads_per_layer(model)}


def build_gpt2(spec: Mapping[str, Any]) -> GPT2LMHeadModel:
    """An (untrained) GPT-2 of the architecture in ``spec`` (from :func:`model_spec`).

    Layers with another head count than ``config.n_head`` are resized; the weights are
    meant to be loaded afterwards. Initialisation draws from a forked RNG, so building a model
    never changes the caller's random state.

    Raises:
        ConfigError: ``spec`` lacks ``config`` or ``heads_per_layer``, or they disagree.
    """
    try:
        config_dict = dict(spec["config"])
        heads = [int(h) for h in spec["heads_per_layer"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"a model spec needs 'config' and 'heads_per_layer' (from model_spec): {exc}"
        ) from None
    with quiet():
        cls_config = type(new_config())
        config = cls_config.from_dict(config_dict)
    if len(heads) != config.n_layer:
        raise ConfigError(
            f"heads_per_layer has {len(heads)} entries but the config has {config.n_layer} layers."
        )
    if min(heads) < 1:
        raise ConfigError(f"every layer needs at least one head, but got {heads}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = new_model(config)
    for layer, attn in enumerate(attention_blocks(model)):
        h = heads[layer]
        if h == attn.num_heads:
            continue
        d, e = int(attn.head_dim), int(attn.embed_dim)
        _set_heads_(attn, torch.zeros(e, 3, h, d), torch.zeros(3, h, d), torch.zeros(h, d, e))
    model.eval()
    return model
