"""The contract every transformer family implements so heads can be gated, scored, removed,
grown and saved the same way across architectures.

A family's **unit** is what is pruned or grown as one piece, and what the public API calls a
"head" (:func:`~selfimprove.nn.transformer.heads_per_layer` counts units):

- GPT-2 (multi-head attention): one attention head;
- Llama (grouped-query attention): one key/value group, i.e. one k head, one v head and the
  ``r = num_attention_heads / num_key_value_heads`` query heads that share them.

Every family's attention ends in an output projection whose input is ``(B, T, U * r * d)``,
the ``U`` units side by side and unit ``u`` in columns ``u*r*d : (u+1)*r*d`` (``d`` the head
width). Scaling a unit's columns by 0 removes exactly its contribution, so gates on that input
and structural surgery give the same logits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["AttentionFamily"]


class AttentionFamily(ABC):
    """Per-layer operations on one architecture's attention (stateless; one instance each).

    Attention modules are typed ``Any``: transformers sets their attributes in ``__init__``
    without annotations. Methods ending in ``_`` change the module in place; the public
    surgery functions only ever call them on a fresh copy or a fresh build.
    """

    #: Short name used in tables and messages (``"gpt2"``, ``"llama"``).
    name: ClassVar[str]
    #: ``config.model_type`` values this family reads.
    model_types: ClassVar[tuple[str, ...]]
    #: Class names of the causal-LM classes this family handles (matched on the MRO).
    model_classes: ClassVar[tuple[str, ...]]

    # -- reading -------------------------------------------------------------------------

    @abstractmethod
    def attention_modules(self, model: nn.Module) -> list[Any]:
        """The attention module of every layer, first layer first."""

    @abstractmethod
    def units(self, attn: Any) -> int:
        """Units (prunable pieces) this layer holds now."""

    @abstractmethod
    def head_dim(self, attn: Any) -> int:
        """Width ``d`` of one attention head (surgery never changes it)."""

    @abstractmethod
    def heads_per_unit(self, attn: Any) -> int:
        """Query heads per unit ``r`` (1 for plain multi-head attention)."""

    @abstractmethod
    def output_projection(self, attn: Any) -> nn.Module:
        """The projection whose input (``(B, T, U * r * d)``, units side by side) is gated."""

    @abstractmethod
    def output_weight(self, attn: Any) -> torch.Tensor:
        """The output projection's weight per unit, detached: ``(U, r * d, E)``, so unit
        ``u`` adds ``o_u @ W[u]`` to the residual stream (``o_u`` its ``r * d`` inputs)."""

    @abstractmethod
    def attention_scores(
        self, attn: Any, hidden: torch.Tensor, kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        """Scaled query-key products before masking and softmax, recomputed from the layer's
        input, in float32.

        Args:
            attn: The attention module.
            hidden: Its input hidden states ``(B, T, E)``.
            kwargs: The keyword arguments the layer passed to ``attn`` (Llama's rotary
                ``position_embeddings`` come this way).

        Returns:
            ``(B, U, r, T, T)``: the scores of each unit's query heads.
        """

    @abstractmethod
    def magnitude(self, attn: Any) -> torch.Tensor:
        """``(U,)``: the sum of the Frobenius norms of each unit's q, k, v and output weights."""

    @abstractmethod
    def unit_masks(self, attn: Any, positions: Sequence[int]) -> dict[nn.Parameter, torch.Tensor]:
        """Masks (1 on the listed units' slices, 0 elsewhere) of the parameters holding them."""

    # -- changing (in place, on a copy) ---------------------------------------------------

    @abstractmethod
    def keep_units_(self, attn: Any, keep: Sequence[int]) -> None:
        """Keep only the units at positions ``keep`` (in that order)."""

    @abstractmethod
    def append_units_(self, attn: Any, n: int, generator: torch.Generator | None) -> None:
        """Append ``n`` units that add nothing to the output (zero output-projection slices).

        Args:
            attn: The attention module.
            n: Units to add.
            generator: Draws the new q, k, v weights with the standard deviation of the
                layer's own (biases zero); ``None`` makes every new weight zero (inert
                padding, as :func:`~selfimprove.nn.transformer.save_pretrained` writes).
        """

    @abstractmethod
    def resize_units_(self, attn: Any, n: int) -> None:
        """Give the layer ``n`` units with all their weights zero (to be loaded afterwards)."""

    # -- configs and models ---------------------------------------------------------------

    @abstractmethod
    def config_class(self) -> type:
        """The transformers config class."""

    @abstractmethod
    def model_class(self) -> type:
        """The transformers causal-LM class."""

    @abstractmethod
    def config_units(self, config: Any) -> int:
        """Units per layer a fresh model of ``config`` has."""

    @abstractmethod
    def export_units(self, config: Any, counts: Sequence[int]) -> int:
        """The one unit count per layer a plain-transformers config can hold for a model
        with ``counts`` units per layer (layers with fewer are padded with inert units).

        Raises:
            ConfigError: The family's config cannot hold that many units per layer.
        """

    @abstractmethod
    def set_config_units_(
        self, config: Any, units: int, head_dim: int, heads_per_unit: int
    ) -> None:
        """Make ``config`` describe ``units`` units per layer of ``heads_per_unit`` heads of
        width ``head_dim``."""
