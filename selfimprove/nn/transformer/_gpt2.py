"""GPT-2 (``GPT2LMHeadModel``): one unit is one attention head.

Layout (transformers 5, ``GPT2Attention``). ``c_attn`` and ``c_proj`` are ``Conv1D`` layers
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

``GPT2Config`` has one ``n_head`` and derives ``head_dim = n_embd // n_head`` (and checks
``head_dim * n_head == n_embd``), so plain transformers can only build layers of exactly
``n_head`` heads: a pruned model is saved padded back to ``n_head`` heads with inert ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.transformer._family_base import AttentionFamily
from selfimprove.nn.transformer.hf import gpt2_module

__all__ = ["GPT2Family"]


def _head_tensors(attn: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer's per-head weights as views: qkv ``(E, 3, h, d)``, qkv bias ``(3, h, d)``,
    proj ``(h, d, E)``."""
    h, d = int(attn.num_heads), int(attn.head_dim)
    w = attn.c_attn.weight.detach()  # (E, 3*h*d)
    b = attn.c_attn.bias.detach()  # (3*h*d,)
    p = attn.c_proj.weight.detach()  # (h*d, E)
    return w.view(w.shape[0], 3, h, d), b.view(3, h, d), p.view(h, d, p.shape[1])


def _set_heads_(attn: Any, qkv: torch.Tensor, qkv_bias: torch.Tensor, proj: torch.Tensor) -> None:
    """Replace a layer's head weights in place.

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


class GPT2Family(AttentionFamily):
    """GPT-2's multi-head attention (``block.attn``, fused ``c_attn``, ``c_proj``)."""

    name = "gpt2"
    model_types = ("gpt2",)
    model_classes = ("GPT2LMHeadModel",)

    def attention_modules(self, model: nn.Module) -> list[Any]:
        return [block.attn for block in model.transformer.h]  # type: ignore[union-attr]

    def units(self, attn: Any) -> int:
        return int(attn.num_heads)

    def head_dim(self, attn: Any) -> int:
        return int(attn.head_dim)

    def heads_per_unit(self, attn: Any) -> int:
        return 1

    def output_projection(self, attn: Any) -> nn.Module:
        proj: nn.Module = attn.c_proj
        return proj

    def output_weight(self, attn: Any) -> torch.Tensor:
        return _head_tensors(attn)[2]  # (h, d, E)

    def attention_scores(
        self, attn: Any, hidden: torch.Tensor, kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        h, d = int(attn.num_heads), int(attn.head_dim)
        b, t, _ = hidden.shape
        q, k, _v = attn.c_attn(hidden).float().split(h * d, dim=2)  # each (B, T, h*d)
        q = q.view(b, t, h, d).transpose(1, 2)  # (B, h, T, d)
        k = k.view(b, t, h, d).transpose(1, 2)  # (B, h, T, d)
        scores = (q @ k.transpose(-1, -2)) * float(attn.scaling)  # (B, h, T, T)
        return scores.unsqueeze(2)  # (B, h, 1, T, T): one query head per unit

    def magnitude(self, attn: Any) -> torch.Tensor:
        qkv, _, proj = _head_tensors(attn)
        qkv, proj = qkv.float(), proj.float()
        score = qkv.pow(2).sum(dim=(0, 3)).sqrt().sum(dim=0)  # (h,): ||Wq|| + ||Wk|| + ||Wv||
        return (score + proj.pow(2).sum(dim=(1, 2)).sqrt()).cpu()

    def unit_masks(self, attn: Any, positions: Sequence[int]) -> dict[nn.Parameter, torch.Tensor]:
        h, d = int(attn.num_heads), int(attn.head_dim)
        w, b, p = attn.c_attn.weight, attn.c_attn.bias, attn.c_proj.weight
        mw = torch.zeros_like(w).view(w.shape[0], 3, h, d)  # (E, 3, h, d)
        mb = torch.zeros_like(b).view(3, h, d)
        mp = torch.zeros_like(p).view(h, d, p.shape[1])  # (h, d, E)
        idx = torch.tensor(list(positions))
        mw[:, :, idx] = 1.0
        mb[:, idx] = 1.0
        mp[idx] = 1.0
        return {w: mw.view_as(w), b: mb.view_as(b), p: mp.view_as(p)}

    def keep_units_(self, attn: Any, keep: Sequence[int]) -> None:
        idx = torch.tensor(list(keep))
        qkv, bias, proj = _head_tensors(attn)
        _set_heads_(attn, qkv[:, :, idx], bias[:, idx], proj[idx])

    def append_units_(self, attn: Any, n: int, generator: torch.Generator | None) -> None:
        qkv, bias, proj = _head_tensors(attn)  # (E, 3, h, d), (3, h, d), (h, d, E)
        e, _, _h, d = qkv.shape
        if generator is None:
            fresh = qkv.new_zeros(e, 3, n, d)
        else:
            std = qkv.float().std(dim=(0, 2, 3)).cpu()  # (3,): one scale each for q, k and v
            fresh = torch.randn(e, 3, n, d, generator=generator) * std.view(1, 3, 1, 1)
            fresh = fresh.to(device=qkv.device, dtype=qkv.dtype)
        qkv_new = torch.cat([qkv, fresh], dim=2)  # (E, 3, h+n, d)
        bias_new = torch.cat([bias, bias.new_zeros(3, n, d)], dim=1)  # (3, h+n, d)
        proj_new = torch.cat([proj, proj.new_zeros(n, d, proj.shape[-1])], dim=0)  # (h+n, d, E)
        _set_heads_(attn, qkv_new, bias_new, proj_new)

    def resize_units_(self, attn: Any, n: int) -> None:
        d, e = int(attn.head_dim), int(attn.embed_dim)
        w = attn.c_attn.weight
        _set_heads_(
            attn,
            w.new_zeros(e, 3, n, d),
            w.new_zeros(3, n, d),
            w.new_zeros(n, d, e),
        )

    def config_class(self) -> type:
        cls: type = gpt2_module().GPT2Config
        return cls

    def model_class(self) -> type:
        cls: type = gpt2_module().GPT2LMHeadModel
        return cls

    def config_units(self, config: Any) -> int:
        return int(config.n_head)

    def export_units(self, config: Any, counts: Sequence[int]) -> int:
        n_head = int(config.n_head)
        over = {layer: c for layer, c in enumerate(counts) if c > n_head}
        if over:
            raise ConfigError(
                f"GPT2Config ties the head count to the width (n_embd = n_head * head_dim = "
                f"{config.n_embd}), so plain transformers builds exactly {n_head} heads per "
                f"layer; layers {over} hold more and cannot be saved as a save_pretrained "
                "folder. Prune them back to at most n_head heads, or save with save_model."
            )
        return n_head

    def set_config_units_(
        self, config: Any, units: int, head_dim: int, heads_per_unit: int
    ) -> None:
        if units != int(config.n_head) or units * head_dim != int(config.n_embd):
            raise ConfigError(
                f"a GPT2Config cannot describe {units} heads of width {head_dim} in a model of "
                f"width {config.n_embd}; GPT-2 heads are n_embd / n_head wide."
            )
