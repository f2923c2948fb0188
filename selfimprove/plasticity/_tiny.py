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
from pathlib import Path
from typing import TYPE_CHECKING

from selfimprove.config import resolve_home
from selfimprove.errors import CheckpointError
from selfimprove.measure.finetune import FinetuneConfig, finetune_
from selfimprove.nn.transformer.checkpoint import load_model, save_model
from selfimprove.nn.transformer.hf import new_model
from selfimprove.nn.transformer.measure import mean_nll
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.tasks.corpus import ByteTokenizer, load_corpus, tokenize_corpus
from selfimprove.tasks.language import TINY_NAME, TinySpec, tiny_config

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["load_tiny"]

logger = logging.getLogger(__name__)


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
