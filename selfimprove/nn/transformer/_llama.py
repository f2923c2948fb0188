"""Llama (``LlamaForCausalLM``, grouped-query attention): one unit is one key/value group.

Layout (transformers 5, ``LlamaAttention``; ``nn.Linear`` weights are stored ``(out, in)``).
With ``G`` key/value heads, ``r = num_key_value_groups`` query heads per key/value head and head
width ``d``:

- ``q_proj.weight`` is ``(G * r * d, E)``: query head ``i`` owns rows ``i*d : (i+1)*d``;
- ``k_proj.weight`` and ``v_proj.weight`` are ``(G * d, E)``: key/value head ``g`` owns rows
  ``g*d : (g+1)*d``;
- ``o_proj.weight`` is ``(E, G * r * d)``: query head ``i``'s output in columns ``i*d : (i+1)*d``
  (``forward`` reshapes ``(B, T, H, d) -> (B, T, H*d)``);
- with ``attention_bias`` the q, k, v biases follow their rows; ``o_proj``'s bias belongs to no
  unit and is kept whole.

``repeat_kv`` expands ``(B, G, T, d) -> (B, G, r, T, d) -> (B, G*r, T, d)``, so query head ``i``
reads key/value head ``i // r``: group ``g`` is query heads ``g*r .. g*r + r - 1``, q rows and
o_proj columns ``g*r*d : (g+1)*r*d`` (torch's ``enable_gqa`` in SDPA uses the same order).
Removing a whole group keeps ``r`` and every remaining query head's partner intact.

``forward`` views every projection with ``(B, T, -1, d)`` and reads the group size from
``module.num_key_value_groups``; no shape comes from the config at run time, so layers may
hold different numbers of groups. ``LlamaConfig`` has one ``num_attention_heads`` and one
``num_key_value_heads`` but an explicit ``head_dim``, so plain transformers builds any uniform
group count whose query heads divide ``hidden_size`` (``validate_architecture`` checks that
even with an explicit ``head_dim``): uneven layers are padded with inert groups up to the
smallest such count that holds the largest layer, and a model pruned evenly to such a count is
saved exactly, smaller.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.transformer._family_base import AttentionFamily
from selfimprove.nn.transformer.hf import llama_module

__all__ = ["LlamaFamily"]


def _group_tensors(attn: Any) -> dict[str, torch.Tensor]:
    """A layer's per-group weights as detached views, the group axis first (``o`` second):
    ``q (G, r*d, E)``, ``k``/``v (G, d, E)``, ``o (E, G, r*d)`` and the q/k/v biases
    ``(G, r*d)``/``(G, d)`` when present."""
    d, r = int(attn.head_dim), int(attn.num_key_value_groups)
    q, k, v, o = (getattr(attn, f"{n}_proj").weight.detach() for n in "qkvo")
    out = {
        "q": q.view(-1, r * d, q.shape[1]),
        "k": k.view(-1, d, k.shape[1]),
        "v": v.view(-1, d, v.shape[1]),
        "o": o.view(o.shape[0], -1, r * d),
    }
    for n, width in (("q", r * d), ("k", d), ("v", d)):
        bias = getattr(attn, f"{n}_proj").bias
        if bias is not None:
            out[f"{n}_bias"] = bias.detach().view(-1, width)
    return out


def _set_groups_(attn: Any, t: Mapping[str, torch.Tensor]) -> None:
    """Write per-group tensors (as from :func:`_group_tensors`) back as new parameters."""
    for n in "qkv":
        lin = getattr(attn, f"{n}_proj")
        w = t[n]  # (G, rows, E)
        lin.weight = nn.Parameter(w.reshape(-1, w.shape[-1]).contiguous().clone())
        lin.out_features = lin.weight.shape[0]
        if f"{n}_bias" in t:
            lin.bias = nn.Parameter(t[f"{n}_bias"].reshape(-1).contiguous().clone())
    o = t["o"]  # (E, G, r*d)
    attn.o_proj.weight = nn.Parameter(o.reshape(o.shape[0], -1).contiguous().clone())
    attn.o_proj.in_features = attn.o_proj.weight.shape[1]


class LlamaFamily(AttentionFamily):
    """Llama's grouped-query attention (``layer.self_attn``: q, k, v and o projections)."""

    name = "llama"
    model_types = ("llama",)
    model_classes = ("LlamaForCausalLM",)

    def attention_modules(self, model: nn.Module) -> list[Any]:
        return [layer.self_attn for layer in model.model.layers]  # type: ignore[union-attr]

    def units(self, attn: Any) -> int:
        return int(attn.k_proj.weight.shape[0]) // int(attn.head_dim)

    def head_dim(self, attn: Any) -> int:
        return int(attn.head_dim)

    def heads_per_unit(self, attn: Any) -> int:
        return int(attn.num_key_value_groups)

    def output_projection(self, attn: Any) -> nn.Module:
        proj: nn.Module = attn.o_proj
        return proj

    def output_weight(self, attn: Any) -> torch.Tensor:
        return _group_tensors(attn)["o"].permute(1, 2, 0)  # (E, G, r*d) -> (G, r*d, E)

    def attention_scores(
        self, attn: Any, hidden: torch.Tensor, kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        d, r = int(attn.head_dim), int(attn.num_key_value_groups)
        b, t, _ = hidden.shape
        q = attn.q_proj(hidden).view(b, t, -1, d).transpose(1, 2)  # (B, G*r, T, d)
        k = attn.k_proj(hidden).view(b, t, -1, d).transpose(1, 2)  # (B, G, T, d)
        cos, sin = kwargs["position_embeddings"]  # rotary, computed once per forward
        rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        q, k = rotary(q, k, cos, sin)
        g = k.shape[1]
        q = q.float().reshape(b, g, r, t, d)  # query head g*r + j is (g, j): repeat_kv's order
        k = k.float().reshape(b, g, 1, t, d)
        return (q @ k.transpose(-1, -2)) * float(attn.scaling)  # (B, G, r, T, T)

    def magnitude(self, attn: Any) -> torch.Tensor:
        t = _group_tensors(attn)
        score = sum(t[n].float().pow(2).sum(dim=(1, 2)).sqrt() for n in "qkv")  # (G,)
        o = t["o"].float().pow(2).sum(dim=(0, 2)).sqrt()  # (G,)
        return (score + o).cpu()

    def unit_masks(self, attn: Any, positions: Sequence[int]) -> dict[nn.Parameter, torch.Tensor]:
        d, r = int(attn.head_dim), int(attn.num_key_value_groups)
        idx = torch.tensor(list(positions))
        masks: dict[nn.Parameter, torch.Tensor] = {}
        for n, width in (("q", r * d), ("k", d), ("v", d)):
            lin = getattr(attn, f"{n}_proj")
            for p in (lin.weight, lin.bias):
                if p is None:
                    continue
                m = torch.zeros_like(p).view(-1, width, *p.shape[1:])  # (G, width[, E])
                m[idx] = 1.0
                masks[p] = m.view_as(p)
        w = attn.o_proj.weight
        m = torch.zeros_like(w).view(w.shape[0], -1, r * d)  # (E, G, r*d)
        m[:, idx] = 1.0
        masks[w] = m.view_as(w)
        return masks

    def keep_units_(self, attn: Any, keep: Sequence[int]) -> None:
        idx = torch.tensor(list(keep))
        t = _group_tensors(attn)
        new = {n: (x[:, idx] if n == "o" else x[idx]) for n, x in t.items()}
        _set_groups_(attn, new)

    def append_units_(self, attn: Any, n: int, generator: torch.Generator | None) -> None:
        t = _group_tensors(attn)
        new: dict[str, torch.Tensor] = {}
        for name, x in t.items():
            if name == "o":  # zero columns: the new groups add nothing yet
                new[name] = torch.cat([x, x.new_zeros(x.shape[0], n, x.shape[2])], dim=1)
                continue
            shape = (n, *x.shape[1:])
            if generator is None or name.endswith("_bias"):
                fresh = x.new_zeros(shape)
            else:  # q, k, v drawn with the scale of the layer's own
                std = float(x.float().std())
                fresh = (torch.randn(shape, generator=generator) * std).to(x.device, x.dtype)
            new[name] = torch.cat([x, fresh], dim=0)
        _set_groups_(attn, new)

    def resize_units_(self, attn: Any, n: int) -> None:
        t = _group_tensors(attn)
        new = {
            name: (
                x.new_zeros(x.shape[0], n, x.shape[2])
                if name == "o"
                else x.new_zeros(n, *x.shape[1:])
            )
            for name, x in t.items()
        }
        _set_groups_(attn, new)

    def config_class(self) -> type:
        cls: type = llama_module().LlamaConfig
        return cls

    def model_class(self) -> type:
        cls: type = llama_module().LlamaForCausalLM
        return cls

    def config_units(self, config: Any) -> int:
        return int(config.num_key_value_heads or config.num_attention_heads)

    def export_units(self, config: Any, counts: Sequence[int]) -> int:
        # LlamaConfig.validate_architecture insists that hidden_size be a multiple of
        # num_attention_heads even when head_dim is explicit, so the smallest count that both
        # holds the largest layer and passes that check.
        hidden = int(config.hidden_size)
        r = int(config.num_attention_heads) // self.config_units(config)
        for units in range(max(counts), hidden // r + 1):
            if hidden % (units * r) == 0:
                return units
        raise ConfigError(
            f"LlamaConfig needs hidden_size ({hidden}) to be a multiple of num_attention_heads, "
            f"and no count of {r}-head groups from {max(counts)} up does that; prune the widest "
            "layer, or save with save_model."
        )

    def set_config_units_(
        self, config: Any, units: int, head_dim: int, heads_per_unit: int
    ) -> None:
        config.num_key_value_heads = units
        config.num_attention_heads = units * heads_per_unit
        config.head_dim = head_dim  # explicit: no longer hidden_size / num_attention_heads
