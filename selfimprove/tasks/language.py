"""A language-modelling :class:`~selfimprove.tasks.Task`, so the main loop can improve GPT-2s.

The task's examples are windows of a byte-level corpus (inputs ``w[:, :-1]``, targets
``w[:, 1:]``), its models are :class:`CausalLM` wrappers (token ids in, logits out: the shape
the evaluator and the judge work with) around ``GPT2LMHeadModel`` s whose heads per layer are
architecture params (``heads_per_layer``), so a version with pruned or grown heads rebuilds from
its params alone.

Objectives: ``nll`` (mean next-token loss per window, nats; its mean over the split is the log of
the perplexity), then the guards ``latency_ms`` and ``size_bytes``. As a guard, ``nll`` may rise
by at most ``log(1 + perplexity_tolerance)`` nats, i.e. perplexity by at most that share (5 % by
default).

The default task, :func:`pydoc_lm_task`, is named by its import path
(``selfimprove.plasticity:pydoc_lm_task``), so a new process resolves it with
:func:`selfimprove.tasks.resolve_task` without registering anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import ConfigError, TaskError
from selfimprove.nn.transformer.hf import new_config
from selfimprove.nn.transformer.surgery import build_gpt2
from selfimprove.objectives import Direction, Objective
from selfimprove.tasks._base import DataSplits, Split, Task, latency_objective, size_objective
from selfimprove.tasks.corpus import (
    ByteTokenizer,
    Corpus,
    TokenData,
    load_corpus,
    tokenize_corpus,
)

if TYPE_CHECKING:
    from transformers import GPT2Config, GPT2LMHeadModel

__all__ = [
    "PYDOC_TASK_NAME",
    "TINY_NAME",
    "CausalLM",
    "LanguageModelTask",
    "TinySpec",
    "pydoc_lm_task",
    "tiny_config",
]

PYDOC_TASK_NAME = "selfimprove.plasticity:pydoc_lm_task"


TINY_NAME = "tiny"


@dataclass(frozen=True)
class TinySpec:
    """Architecture and pre-training of ``tiny``.

    Attributes:
        n_layer: Transformer blocks.
        n_head: Attention heads per block.
        n_embd: Model width (head width = ``n_embd / n_head``).
        context: Positions (the longest window the model sees).
        steps: Pre-training steps.
        batch_size: Windows per step.
        lr: Peak learning rate (warm-up, cosine decay).
        seed: Seeds initialisation and batches.
    """

    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 128
    context: int = 128
    steps: int = 400
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n_layer, self.n_head, self.n_embd, self.context, self.batch_size) < 1:
            raise ConfigError(f"tiny spec values must be >= 1, but got {self}.")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd must be divisible by n_head, but got {self.n_embd=}, {self.n_head=}."
            )
        if self.steps < 1 or not self.lr > 0:
            raise ConfigError(f"steps must be >= 1 and lr > 0, but got {self.steps=}, {self.lr=}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


def tiny_config(spec: TinySpec) -> GPT2Config:
    """The ``GPT2Config`` of ``tiny`` (byte vocabulary, no dropout, no KV cache by default)."""
    return new_config(
        vocab_size=256,
        n_positions=spec.context,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
        use_cache=False,
    )


class CausalLM(nn.Module):
    """Token ids in, logits out.

    Args:
        gpt2: The wrapped ``GPT2LMHeadModel`` (kept as the attribute ``gpt2``).
    """

    def __init__(self, gpt2: GPT2LMHeadModel) -> None:
        super().__init__()
        self.gpt2 = gpt2

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` token ids -> ``(B, T, V)`` next-token logits."""
        logits: torch.Tensor = self.gpt2(input_ids=input_ids).logits
        return logits


def _spec(params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        n_layer, n_head = int(params["n_layer"]), int(params["n_head"])
        spec = TinySpec(
            n_layer=n_layer,
            n_head=n_head,
            n_embd=int(params["n_embd"]),
            context=int(params["n_positions"]),
        )
        heads = [int(h) for h in params.get("heads_per_layer", [n_head] * n_layer)]
    except (KeyError, TypeError, ValueError) as exc:
        raise TaskError(
            "language-model params need n_layer, n_head, n_embd, n_positions and optionally "
            f"heads_per_layer: {exc}"
        ) from None
    return {"config": tiny_config(spec).to_dict(), "heads_per_layer": heads}


class LanguageModelTask(Task):
    """Next-token prediction on a byte-level corpus.

    Args:
        name: Task name (use an import path ``"package.module:attr"`` to make it resolvable in
            a new process).
        corpus: The text (default: the built-in ``pydoc`` corpus).
        context: Tokens per window.
        max_windows: Cap on windows per split (train, validation, test), taken from the start
            of each split.
        default_params: Architecture of a reasonable model (default: ``tiny``'s).
        perplexity_tolerance: Guard tolerance on perplexity (relative).
        family: Task family.
    """

    def __init__(
        self,
        name: str = PYDOC_TASK_NAME,
        corpus: Corpus | None = None,
        *,
        context: int = 64,
        max_windows: tuple[int, int, int] = (2048, 128, 128),
        default_params: Mapping[str, Any] | None = None,
        perplexity_tolerance: float = 0.05,
        family: str = "byte_language_model",
    ) -> None:
        if context < 2:
            raise TaskError(f"context must be >= 2 tokens, but got {context=}.")
        self.name = name
        self.family = family
        self.context = context
        self.max_windows = max_windows
        self._corpus = corpus
        self._data: TokenData | None = None
        self._splits: DataSplits | None = None
        tiny = TinySpec()
        self._default = dict(
            default_params
            or {
                "n_layer": tiny.n_layer,
                "n_head": tiny.n_head,
                "n_embd": tiny.n_embd,
                "n_positions": max(context, tiny.context),
            }
        )
        self.objectives = (
            Objective(
                "nll",
                Direction.MINIMIZE,
                unit="nats/token",
                ideal=0.0,
                tolerance=math.log1p(perplexity_tolerance),
                absolute_tolerance=True,
            ),
            latency_objective(),
            size_objective(),
        )

    def token_data(self) -> TokenData:
        """The corpus as byte-token streams (computed once)."""
        if self._data is None:
            corpus = self._corpus or load_corpus(None)
            # Built outside inference mode even when first asked for inside it (the evaluator
            # runs under torch.inference_mode): inference tensors cannot enter training later.
            with torch.inference_mode(False):
                self._data = tokenize_corpus(corpus, ByteTokenizer())
        return self._data

    def splits(self) -> DataSplits:
        if self._splits is None:
            data = self.token_data()
            parts = []
            with torch.inference_mode(False):
                for split, cap in zip(
                    ("train", "validation", "test"), self.max_windows, strict=True
                ):
                    w = data.windows(split, self.context, cap)  # (W, context + 1)
                    parts.append(Split(w[:, :-1].contiguous(), w[:, 1:].contiguous()))
            self._splits = DataSplits(*parts)
        return self._splits

    def build(self, params: Mapping[str, Any]) -> nn.Module:
        return CausalLM(build_gpt2(_spec(params)))

    def default_params(self) -> dict[str, Any]:
        return dict(self._default)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(
            outputs.reshape(-1, outputs.shape[-1]).float(), targets.reshape(-1)
        )

    def per_example(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        nll = nn.functional.cross_entropy(
            outputs.detach().reshape(-1, outputs.shape[-1]).double(),
            targets.reshape(-1),
            reduction="none",
        ).view(targets.shape)  # (N, T)
        per_window = nll.mean(dim=1)
        per_window[~torch.isfinite(per_window)] = math.inf
        return {"nll": per_window.numpy()}

    def initial_training(self) -> dict[str, Any]:
        return {"epochs": 1, "lr": 3e-3, "batch_size": 16}


_PYDOC_TASK: LanguageModelTask | None = None


def pydoc_lm_task() -> LanguageModelTask:
    """The built-in byte-level language-modelling task (one instance per process)."""
    global _PYDOC_TASK
    if _PYDOC_TASK is None:
        _PYDOC_TASK = LanguageModelTask()
    return _PYDOC_TASK
