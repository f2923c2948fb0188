"""Per-head gates on GPT-2 attention, written by hand.

transformers 5 removed ``head_mask`` and ``prune_heads`` from GPT-2 (a ``head_mask`` argument is
silently ignored), so gating is done here: a forward pre-hook on each block's ``attn.c_proj``
scales each head's slice of that projection's input. That input is the attention output with
the heads side by side, ``(B, T, h * d)``, head ``i`` in columns ``i*d : (i+1)*d`` (transformers
reshapes ``(B, h, T, d) -> (B, T, h, d) -> (B, T, h*d)``). Multiplying a head's slice by 0 is
exactly removing it (its ``c_proj`` rows then add nothing), which is what
:func:`selfimprove.plasticity.prune_heads` does structurally; the two must give the same logits.

A gate may be one value per head, ``(h,)``, or one per sequence and head, ``(B, h)``. The second
form gives per-sequence gradients in one backward pass (sequence ``b``'s loss depends only on its
own gates), which is what Michel et al. (2019)'s importance ``E_x |dL(x)/d xi_h|`` needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.transformer.hf import is_gpt2

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["HeadGates", "attention_blocks", "head_dim", "heads_per_layer", "total_heads"]


def attention_blocks(model: GPT2LMHeadModel) -> list[Any]:
    """The attention modules (``block.attn``) of a GPT-2 model, first layer first.

    Typed ``Any``: ``GPT2Attention`` sets its attributes (``num_heads``, ``head_dim``,
    ``c_attn``, ``c_proj``, ...) in ``__init__`` without annotations.

    Raises:
        ConfigError: ``model`` is not a ``GPT2LMHeadModel``.
    """
    if not is_gpt2(model):
        raise ConfigError(
            f"head plasticity works on GPT-2-family models (GPT2LMHeadModel), "
            f"not {type(model).__name__}."
        )
    return [block.attn for block in model.transformer.h]


def heads_per_layer(model: GPT2LMHeadModel) -> list[int]:
    """Number of attention heads in each layer (they may differ after surgery)."""
    return [int(attn.num_heads) for attn in attention_blocks(model)]


def total_heads(model: GPT2LMHeadModel) -> int:
    """Number of attention heads in the whole model."""
    return sum(heads_per_layer(model))


def head_dim(model: GPT2LMHeadModel) -> int:
    """Width of one head (the same in every layer; surgery never changes it)."""
    return int(attention_blocks(model)[0].head_dim)


class HeadGates:
    """Multiplicative per-head gates, active inside a ``with`` block.

    Args:
        model: A GPT-2 model (not changed: hooks are added on entry and removed on exit).
        values: One tensor per layer, ``(h_l,)`` or ``(B, h_l)``; default all ones. The tensors
            are used as given (so gradients flow to them when they require grad) and may be
            replaced through :attr:`values` while the block runs.

    Raises:
        ConfigError: Wrong number of layers or wrong head counts.

    Example::

        gates = [torch.ones(h) for h in heads_per_layer(model)]
        gates[0][3] = 0.0                       # silence head 3 of layer 0
        with HeadGates(model, gates):
            logits = model(input_ids=x).logits  # (B, T, V)
    """

    def __init__(self, model: GPT2LMHeadModel, values: Sequence[torch.Tensor] | None = None):
        counts = heads_per_layer(model)
        self.model = model
        self.values: list[torch.Tensor] = (
            [torch.ones(h) for h in counts] if values is None else list(values)
        )
        if len(self.values) != len(counts):
            raise ConfigError(
                f"gates need one tensor per layer ({len(counts)}), but got {len(self.values)}."
            )
        for layer, (g, h) in enumerate(zip(self.values, counts, strict=True)):
            if g.dim() not in (1, 2) or g.shape[-1] != h:
                raise ConfigError(
                    f"gates of layer {layer} must have shape ({h},) or (B, {h}), "
                    f"but got {tuple(g.shape)}."
                )
        self._handles: list[Any] = []

    def _hook(self, layer: int, h: int, d: int) -> Any:
        def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            (x, *rest) = args  # x: (B, T, h*d), heads side by side
            g = self.values[layer].to(dtype=x.dtype, device=x.device)
            b, t = x.shape[0], x.shape[1]
            scale = g.view(1, 1, h, 1) if g.dim() == 1 else g.view(b, 1, h, 1)
            return ((x.view(b, t, h, d) * scale).view(b, t, h * d), *rest)

        return pre_hook

    def __enter__(self) -> HeadGates:
        if self._handles:
            raise ConfigError("these gates are already attached; leave the first block first.")
        for layer, attn in enumerate(attention_blocks(self.model)):
            hook = self._hook(layer, int(attn.num_heads), int(attn.head_dim))
            self._handles.append(attn.c_proj.register_forward_pre_hook(hook))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @classmethod
    def mask(
        cls, model: GPT2LMHeadModel, removed: Mapping[int, Sequence[int]] | None = None
    ) -> HeadGates:
        """Gates of 1 everywhere except 0 for the ``removed`` heads (layer -> head positions).

        Raises:
            ConfigError: A layer or head index out of range.
        """
        counts = heads_per_layer(model)
        values = [torch.ones(h) for h in counts]
        for layer, heads in (removed or {}).items():
            if not 0 <= layer < len(counts):
                raise ConfigError(f"layer {layer} out of range [0, {len(counts)}).")
            for head in heads:
                if not 0 <= head < counts[layer]:
                    raise ConfigError(
                        f"head {head} out of range [0, {counts[layer]}) in layer {layer}."
                    )
                values[layer][head] = 0.0
        return cls(model, values)
