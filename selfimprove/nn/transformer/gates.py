"""Per-head gates on transformer attention, written by hand.

transformers 5 removed ``head_mask`` and ``prune_heads`` (a ``head_mask`` argument is silently
ignored), so gating is done here: a forward pre-hook on each layer's output projection (GPT-2's
``attn.c_proj``, Llama's ``self_attn.o_proj``; see :mod:`.family`) scales each unit's slice of
that projection's input. That input is the attention output with the heads side by side,
``(B, T, H * d)``, head ``i`` in columns ``i*d : (i+1)*d`` (transformers reshapes
``(B, H, T, d) -> (B, T, H, d) -> (B, T, H*d)``); a unit is ``r`` consecutive heads (``r = 1``
for GPT-2, the query heads of one key/value group for Llama), columns ``u*r*d : (u+1)*r*d``.
Multiplying a unit's slice by 0 is exactly removing it (its projection rows then add nothing),
which is what :func:`~selfimprove.nn.transformer.prune_heads` does structurally; the two must
give the same logits.

A gate may be one value per unit, ``(U,)``, or one per sequence and unit, ``(B, U)``. The second
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
from selfimprove.nn.transformer.family import family_of

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["HeadGates", "attention_blocks", "head_dim", "heads_per_layer", "total_heads"]


def attention_blocks(model: GPT2LMHeadModel) -> list[Any]:
    """The attention modules of a supported model (GPT-2's ``block.attn``, Llama's
    ``layer.self_attn``), first layer first.

    Typed ``Any``: transformers sets their attributes in ``__init__`` without annotations.

    Raises:
        ConfigError: ``model``'s family is not supported (see :mod:`.family`).
    """
    return family_of(model).attention_modules(model)


def heads_per_layer(model: GPT2LMHeadModel) -> list[int]:
    """Number of heads (units: key/value groups for Llama) in each layer; they may differ
    after surgery."""
    family = family_of(model)
    return [family.units(attn) for attn in family.attention_modules(model)]


def total_heads(model: GPT2LMHeadModel) -> int:
    """Number of heads (units) in the whole model."""
    return sum(heads_per_layer(model))


def head_dim(model: GPT2LMHeadModel) -> int:
    """Width of one attention head (the same in every layer; surgery never changes it)."""
    family = family_of(model)
    return family.head_dim(family.attention_modules(model)[0])


class HeadGates:
    """Multiplicative per-head (per-unit) gates, active inside a ``with`` block.

    Args:
        model: A GPT-2 or Llama model (not changed: hooks are added on entry and removed on
            exit).
        values: One tensor per layer, ``(h_l,)`` or ``(B, h_l)`` with ``h_l`` the layer's units
            (:func:`heads_per_layer`); default all ones. The tensors
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

    def _hook(self, layer: int, h: int, w: int) -> Any:
        def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            (x, *rest) = args  # x: (B, T, h*w), units side by side, w = r*d columns each
            g = self.values[layer].to(dtype=x.dtype, device=x.device)
            b, t = x.shape[0], x.shape[1]
            scale = g.view(1, 1, h, 1) if g.dim() == 1 else g.view(b, 1, h, 1)
            return ((x.view(b, t, h, w) * scale).view(b, t, h * w), *rest)

        return pre_hook

    def __enter__(self) -> HeadGates:
        if self._handles:
            raise ConfigError("these gates are already attached; leave the first block first.")
        family = family_of(self.model)
        for layer, attn in enumerate(family.attention_modules(self.model)):
            width = family.heads_per_unit(attn) * family.head_dim(attn)
            hook = self._hook(layer, family.units(attn), width)
            self._handles.append(family.output_projection(attn).register_forward_pre_hook(hook))
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
