"""The bench a plasticity run works on: device, tokenizer, data windows, and the measurements.

:func:`load_workbench` loads the model and its surroundings once; :class:`Workbench` measures
any model on them (validation/test perplexity, degeneration, interleaved latency, per-window
probe losses) and draws the seeded training windows a cycle scores heads on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.nn.device import resolve_device
from selfimprove.nn.transformer.gates import heads_per_layer
from selfimprove.nn.transformer.measure import (
    count_parameters,
    measure_latency,
    perplexity,
    sequence_nll,
)
from selfimprove.nn.transformer.pretrained import load_pretrained, load_pretrained_tokenizer
from selfimprove.plasticity._config import PlasticityConfig
from selfimprove.plasticity._degeneration import (
    DegenerationConfig,
    DegenerationReport,
    degeneration_score,
)
from selfimprove.plasticity._tiny import load_tiny
from selfimprove.seeding import derive_seed
from selfimprove.tasks.corpus import (
    ByteTokenizer,
    Corpus,
    HFTokenizer,
    TokenData,
    Tokenizer,
    load_corpus,
    tokenize_corpus,
)
from selfimprove.tasks.language import TINY_NAME

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["Workbench", "load_workbench", "to_device", "window_losses"]


#: The model families a plasticity run accepts from a folder (see ``selfimprove.nn.transformer``).
PLASTICITY_FAMILIES = ("gpt2", "llama")


def to_device(model: GPT2LMHeadModel, device: torch.device) -> GPT2LMHeadModel:
    """``model`` moved to ``device`` in place, in eval mode."""
    nn.Module.to(model, device)
    model.eval()
    return model


@torch.no_grad()
def window_losses(model: GPT2LMHeadModel, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss of each window, ``(N,)`` nats (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([sequence_nll(model, w).double() for w in windows.split(32)])
    finally:
        model.train(was_training)


def snapshot(model: GPT2LMHeadModel) -> dict[str, Any]:
    """Heads (total and per layer) and parameters of ``model``."""
    heads = heads_per_layer(model)
    return {"heads": sum(heads), "heads_per_layer": heads, "parameters": count_parameters(model)}


@dataclass(frozen=True)
class Workbench:
    """Everything a run measures models on (built by :func:`load_workbench`).

    Attributes:
        config: The run's settings.
        device: Where models run.
        corpus: The text.
        tokenizer: Its tokenizer.
        data: The tokenized splits.
        context: Tokens per window (the config's, capped at the model's positions).
        degeneration_config: Generation settings, shortened to fit the model's positions.
        val: Validation windows, ``(eval_windows, context + 1)``.
        test: Test windows (reported only), same shape.
    """

    config: PlasticityConfig
    device: torch.device
    corpus: Corpus
    tokenizer: Tokenizer
    data: TokenData
    context: int
    degeneration_config: DegenerationConfig
    val: torch.Tensor
    test: torch.Tensor

    def perplexity(self, model: GPT2LMHeadModel, split: str = "validation") -> float:
        """Perplexity of ``model`` on the validation (or ``"test"``) windows."""
        return perplexity(model, self.val if split == "validation" else self.test)

    def degeneration(self, model: GPT2LMHeadModel) -> DegenerationReport:
        """Degeneration of ``model``'s seeded generations (same seed every call)."""
        cfg = self.degeneration_config
        return degeneration_score(
            model,
            self.data,
            replace(cfg, seed=derive_seed(self.config.seed, "deg", cfg.seed)),
            tokenizer=self.tokenizer,
        )

    def latency(
        self, *models: GPT2LMHeadModel, repeats: int | None = None
    ) -> list[tuple[float, float]]:
        """Median ms per model at batch 1 and at the serving batch (timed interleaved)."""
        out = []
        for batch in (1, self.config.serving_batch):
            rows = torch.arange(batch) % len(self.val)
            x = self.val[rows, :-1].to(self.device)  # (batch, T)
            times = measure_latency(models, x, repeats=repeats or self.config.latency_repeats)
            out.append([float(np.median(t)) for t in times])
        return list(zip(out[0], out[1], strict=True))

    def importance_batches(self, seed: int) -> list[torch.Tensor]:
        """The training batches a cycle scores heads on, each ``(B, T + 1)``."""
        gen = torch.Generator().manual_seed(derive_seed("importance-batches", seed) % 2**63)
        return [
            self.data.random_batch(self.context, self.config.importance_batch_size, gen)
            for _ in range(self.config.importance_batches)
        ]

    def probe(self, seed: int) -> torch.Tensor:
        """``eval_windows`` training windows, drawn apart from the importance batches, that
        screen the estimators: ``(N, T + 1)``."""
        gen = torch.Generator().manual_seed(derive_seed("probe-windows", seed) % 2**63)
        return self.data.random_batch(self.context, self.config.eval_windows, gen)


def _load_model(
    model_name: str,
    corpus: Corpus,
    config: PlasticityConfig,
    home: Path | None,
    emit: Callable[..., None],
) -> tuple[GPT2LMHeadModel, Tokenizer]:
    """The model called ``model_name`` and its tokenizer (``tiny`` pre-trained on the training
    split of ``corpus``, the run's own, when the cache does not hold it)."""
    tokenizer: Tokenizer
    if model_name == TINY_NAME:
        tokenizer = ByteTokenizer()
        folder: list[str] = []
        model = load_tiny(
            config.tiny,
            corpus=corpus,
            home=home,
            on_pretrain=lambda path: folder.append(str(path)),
            progress=lambda s, n, loss: emit(
                "pretrain", step=s, steps=n, loss=loss, corpus=corpus.name, folder=folder[0]
            ),
        )
    else:
        model = load_pretrained(model_name, families=PLASTICITY_FAMILIES)
        try:
            tokenizer = HFTokenizer(load_pretrained_tokenizer(model_name))
        except NotFoundError:
            if int(model.config.vocab_size) != 256:
                raise
            # A byte-level model saved without tokenizer files (e.g. tiny, saved with
            # save_pretrained): its tokens are UTF-8 bytes.
            tokenizer = ByteTokenizer()
    model.config.use_cache = False
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but {model_name!r} only "
            f"{model.config.vocab_size} embeddings."
        )
    return model, tokenizer


def _fit_degeneration(cfg: DegenerationConfig, positions: int) -> DegenerationConfig:
    """``cfg`` with generations shortened to fit ``positions`` (same seed, same score)."""
    room = positions - cfg.prompt_tokens
    if cfg.new_tokens <= room:
        return cfg
    if room < cfg.repeat_n + 1:
        raise ConfigError(
            f"degeneration prompts of {cfg.prompt_tokens} tokens leave no room to "
            f"generate in the model's {positions} positions."
        )
    return replace(cfg, new_tokens=room)


def load_workbench(
    model_name: str,
    dataset: str | os.PathLike[str] | Corpus | None,
    device: str,
    config: PlasticityConfig,
    *,
    home: str | os.PathLike[str] | None = None,
    emit: Callable[..., None] = lambda event, **data: None,
) -> tuple[Workbench, GPT2LMHeadModel]:
    """Load the tokenizer, corpus and model.

    Args:
        model_name: ``"tiny"`` or a GPT-2 model name or folder available offline.
        dataset: ``None`` / ``"pydoc"``, a text-file path, an offline HF dataset, a Corpus.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        config: The run's settings.
        home: Home folder (where ``tiny`` is cached when the machine-wide cache is not
            writable).
        emit: Progress callback (``emit("pretrain", step=..., steps=..., loss=..., corpus=...,
            folder=...)`` while ``tiny`` is pre-trained on ``corpus`` into ``folder``).

    Returns:
        The workbench and the model on its device, in eval mode.

    Raises:
        ConfigError: Bad device or data too small.
        NotFoundError: Model or dataset not available offline.
    """
    torch_device = resolve_device(device)
    corpus = dataset if isinstance(dataset, Corpus) else load_corpus(dataset)
    model, tokenizer = _load_model(
        model_name, corpus, config, None if home is None else Path(home), emit
    )
    data = tokenize_corpus(corpus, tokenizer)
    context = min(config.context, int(model.config.max_position_embeddings))
    bench = Workbench(
        config=config,
        device=torch_device,
        corpus=corpus,
        tokenizer=tokenizer,
        data=data,
        context=context,
        degeneration_config=_fit_degeneration(
            config.degeneration, int(model.config.max_position_embeddings)
        ),
        val=data.windows("validation", context, config.eval_windows),
        test=data.windows("test", context, config.eval_windows),
    )
    return bench, to_device(model, torch_device)
