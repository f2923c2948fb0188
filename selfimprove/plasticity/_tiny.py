"""``tiny``: a small byte-level GPT-2 pre-trained here on the built-in corpus, cached in the home.

Nothing can be downloaded at run time, so ``--model_name tiny`` is built locally: a GPT-2 of
:class:`TinySpec` (by default 4 layers x 8 heads, 128 dimensions, byte vocabulary of 256, no
dropout) trained for a few hundred real AdamW steps on the training split of the built-in
``pydoc`` corpus (always that corpus, so ``tiny`` is the same model whatever ``--dataset`` says).
The weights are cached under ``<home>/plasticity/tiny/<key>/`` (safetensors + manifest with the
sha256), where ``key`` hashes the spec and the corpus, so a changed spec trains a new cache
entry and a second call loads in well under a second.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfimprove.config import resolve_home
from selfimprove.errors import CheckpointError, ConfigError
from selfimprove.plasticity._checkpoint import load_model, save_model
from selfimprove.plasticity._corpus import ByteTokenizer, load_corpus, tokenize_corpus
from selfimprove.plasticity._finetune import FinetuneConfig, finetune_
from selfimprove.plasticity._hf import new_config, new_model
from selfimprove.plasticity._measure import mean_nll
from selfimprove.seeding import derive_seed, torch_seeded

if TYPE_CHECKING:
    from transformers import GPT2Config, GPT2LMHeadModel

__all__ = ["TINY_NAME", "TinySpec", "load_tiny", "tiny_config"]

logger = logging.getLogger(__name__)

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


def _cache_key(spec: TinySpec, fingerprint: str) -> str:
    return f"{derive_seed('tiny', sorted(spec.to_dict().items()), fingerprint):016x}"


def load_tiny(
    spec: TinySpec | None = None,
    *,
    home: str | Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> GPT2LMHeadModel:
    """``tiny`` from the cache, pre-training and caching it first if needed.

    Args:
        spec: Architecture and pre-training (default :class:`TinySpec`).
        home: Home folder (see :func:`selfimprove.config.resolve_home`).
        progress: Called as ``(step, steps, loss)`` while pre-training.

    Returns:
        The model, in eval mode.

    Raises:
        ConfigError: Bad spec or an unwritable home.
    """
    spec = spec or TinySpec()
    corpus = load_corpus(None)
    folder = resolve_home(home) / "plasticity" / "tiny" / _cache_key(spec, corpus.fingerprint)
    path = folder / "model"
    if path.with_suffix(".json").exists():
        try:
            model = load_model(path)
            logger.info("loaded tiny from %s", folder)
            return model
        except CheckpointError as exc:
            logger.warning("the cached tiny model is unusable (%s); pre-training it again", exc)
    data = tokenize_corpus(corpus, ByteTokenizer())
    with torch_seeded(spec.seed):
        model = new_model(tiny_config(spec))
    cfg = FinetuneConfig(
        steps=spec.steps,
        lr=spec.lr,
        batch_size=spec.batch_size,
        context=spec.context,
        warmup_steps=max(1, spec.steps // 20),
        weight_decay=0.01,
    )
    logger.info("pre-training tiny (%d steps) into %s", spec.steps, folder)
    result = finetune_(
        model,
        data,
        cfg,
        seed=spec.seed,
        on_step=(lambda s, loss: progress(s + 1, spec.steps, loss)) if progress else None,
    )
    model.eval()
    val_nll = mean_nll(model, data.windows("validation", spec.context, max_windows=64))
    save_model(
        model,
        path,
        extra={
            "name": TINY_NAME,
            "tiny_spec": spec.to_dict(),
            "corpus": corpus.name,
            "corpus_sha256": corpus.fingerprint,
            "final_train_loss": result.losses[-1],
            "validation_perplexity": math.exp(val_nll),
            "pretrain_seconds": result.seconds,
        },
    )
    logger.info(
        "tiny pre-trained: train loss %.3f, validation perplexity %.2f (%.1f s)",
        result.losses[-1],
        math.exp(val_nll),
        result.seconds,
    )
    return model
