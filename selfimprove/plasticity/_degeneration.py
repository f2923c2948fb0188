"""A deterministic degeneration score: how much seeded generations loop and lose diversity.

Generation. ``prompts`` prompts of ``prompt_tokens`` tokens are taken at evenly spaced places of
the **validation** stream; from each, ``new_tokens`` tokens are sampled at ``temperature``
(plain multinomial sampling, no top-k) with a generator seeded from ``seed``, using the KV cache.
Same model, same config, same CPU: same tokens, so the score is deterministic.

Statistics, over the generated tokens only (never the prompt):

- ``repeated_ngram_rate`` (``n = repeat_n``, default 4): per continuation, the share of its
  n-grams that already occurred earlier in the same continuation, averaged (a loop drives it
  to 1);
- ``distinct_n`` (``n = distinct_n``, default 2): unique n-grams / n-grams, pooled over all
  continuations (the same text for every prompt lowers it);
- ``entropy``: entropy (bits) of the pooled token distribution.

Reference. The same statistics of the text that really follows the prompts in the corpus (same
lengths). Human text repeats some n-grams too, so each component measures only the *excess*
over that reference, clipped to [0, 1]::

    repetition = (r - r_ref) / (1 - r_ref)
    monotony   = (d_ref - d) / d_ref
    collapse   = (H_ref - H) / H_ref
    score      = (repetition + monotony + collapse) / 3

0 means "as varied as the corpus", 1 "one token forever". Thresholds (:data:`HEALTHY`,
:data:`DEGENERATE`): ``score <= 0.15`` healthy, ``0.15 < score <= 0.35`` warning, above
``0.35`` degenerate (a plasticity cycle that ends there is undone). A model that writes
varied nonsense is not "degenerate" in this sense; perplexity catches that.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.seeding import derive_seed
from selfimprove.tasks.corpus import TokenData, Tokenizer

__all__ = [
    "DEGENERATE",
    "HEALTHY",
    "DegenerationConfig",
    "DegenerationReport",
    "degeneration_score",
    "generate",
    "text_statistics",
    "verdict",
]

#: At or below: healthy.
HEALTHY = 0.15
#: Above: degenerate.
DEGENERATE = 0.35


@dataclass(frozen=True)
class DegenerationConfig:
    """How generations are drawn and scored.

    Attributes:
        prompts: Number of prompts (continuations).
        prompt_tokens: Tokens per prompt.
        new_tokens: Tokens generated per prompt (``prompt_tokens + new_tokens`` must fit the
            model's positions).
        temperature: Sampling temperature (> 0).
        repeat_n: ``n`` of the repeated n-gram rate.
        distinct_n: ``n`` of distinct-n.
        seed: Seeds the sampling.
    """

    prompts: int = 8
    prompt_tokens: int = 16
    new_tokens: int = 96
    temperature: float = 1.0
    repeat_n: int = 4
    distinct_n: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.prompts, self.prompt_tokens, self.new_tokens) < 1:
            raise ConfigError(f"prompts, prompt_tokens and new_tokens must be >= 1: {self}.")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, but got {self.temperature=}.")
        if self.repeat_n < 1 or self.distinct_n < 1 or self.new_tokens < self.repeat_n + 1:
            raise ConfigError(f"n-gram sizes must be >= 1 and shorter than new_tokens: {self}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


@dataclass(frozen=True)
class DegenerationReport:
    """A degeneration measurement.

    Attributes:
        score: The one score in [0, 1] (see the module docstring).
        verdict: ``healthy``, ``warning`` or ``degenerate``.
        repeated_ngram_rate: Of the generations.
        distinct_n: Of the generations.
        entropy: Of the generations (bits).
        reference: The same statistics of the real continuations.
        components: ``repetition``, ``monotony``, ``collapse``.
        samples: The first few continuations, decoded (for the record).
    """

    score: float
    verdict: str
    repeated_ngram_rate: float
    distinct_n: float
    entropy: float
    reference: dict[str, float]
    components: dict[str, float]
    samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


def verdict(score: float) -> str:
    """``healthy`` / ``warning`` / ``degenerate`` for a score (see the thresholds)."""
    if score <= HEALTHY:
        return "healthy"
    return "warning" if score <= DEGENERATE else "degenerate"


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: torch.Tensor,
    new_tokens: int,
    *,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Sample continuations with the KV cache.

    Args:
        model: A ``GPT2LMHeadModel`` (eval mode is set; the caller's mode is restored).
        prompts: ``(B, P)`` token ids.
        new_tokens: Tokens to sample per prompt.
        generator: Seeded generator for the draws.
        temperature: Softmax temperature.

    Returns:
        ``(B, new_tokens)`` sampled token ids.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = model(input_ids=prompts.to(device), use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]  # logits: (B, V)
        tokens = []
        for i in range(new_tokens):
            probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)  # (B, V)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            tokens.append(nxt)
            if i + 1 < new_tokens:
                out = model(input_ids=nxt.to(device), past_key_values=cache, use_cache=True)
                cache, logits = out.past_key_values, out.logits[:, -1]
    finally:
        model.train(was_training)
    return torch.cat(tokens, dim=1)


def _ngrams(seq: Sequence[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def text_statistics(
    sequences: Sequence[Sequence[int]], repeat_n: int, distinct_n: int
) -> dict[str, float]:
    """Repeated n-gram rate, distinct-n and token entropy (bits) of token sequences.

    Raises:
        ConfigError: No sequence long enough for the n-grams.
    """
    rates = []
    pooled: list[tuple[int, ...]] = []
    counts: Counter[int] = Counter()
    for seq in sequences:
        seq = [int(t) for t in seq]
        grams = _ngrams(seq, repeat_n)
        if grams:
            seen: set[tuple[int, ...]] = set()
            repeated = 0
            for g in grams:
                repeated += g in seen
                seen.add(g)
            rates.append(repeated / len(grams))
        pooled += _ngrams(seq, distinct_n)
        counts.update(seq)
    if not rates or not pooled:
        raise ConfigError("sequences are too short for the n-gram statistics.")
    total = sum(counts.values())
    entropy = -sum(c / total * math.log2(c / total) for c in counts.values())
    return {
        "repeated_ngram_rate": sum(rates) / len(rates),
        "distinct_n": len(set(pooled)) / len(pooled),
        "entropy": entropy,
    }


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def degeneration_score(
    model: nn.Module,
    data: TokenData,
    config: DegenerationConfig | None = None,
    *,
    tokenizer: Tokenizer | None = None,
    keep_samples: int = 3,
) -> DegenerationReport:
    """Score ``model``'s seeded generations against the corpus's own continuations.

    Args:
        model: A ``GPT2LMHeadModel``.
        data: Token streams (prompts and references come from ``validation``).
        config: Generation and statistics settings.
        tokenizer: Decodes a few samples for the record (none kept without it).
        keep_samples: How many decoded samples to keep.

    Returns:
        The report.

    Raises:
        ConfigError: Prompts and generations do not fit the model or the validation stream.
    """
    cfg = config or DegenerationConfig()
    positions = int(getattr(getattr(model, "config", None), "max_position_embeddings", 0) or 0)
    if positions and cfg.prompt_tokens + cfg.new_tokens > positions:
        raise ConfigError(
            f"prompt_tokens + new_tokens = {cfg.prompt_tokens + cfg.new_tokens} exceeds the "
            f"model's {positions} positions; generate fewer tokens."
        )
    stream = data.validation
    span = cfg.prompt_tokens + cfg.new_tokens
    if len(stream) < span * cfg.prompts:
        raise ConfigError(
            f"the validation split ({len(stream)} tokens) is too short for {cfg.prompts} "
            f"prompts of {span} tokens."
        )
    stride = (len(stream) - span) // max(1, cfg.prompts - 1) if cfg.prompts > 1 else 0
    starts = [i * stride for i in range(cfg.prompts)]
    prompts = torch.stack([stream[s : s + cfg.prompt_tokens] for s in starts])  # (B, P)
    real = [stream[s + cfg.prompt_tokens : s + span].tolist() for s in starts]  # B x new
    gen = torch.Generator().manual_seed(derive_seed("degeneration", cfg.seed) % 2**63)
    out = generate(model, prompts, cfg.new_tokens, generator=gen, temperature=cfg.temperature)
    sampled = out.tolist()  # B x new
    mine = text_statistics(sampled, cfg.repeat_n, cfg.distinct_n)
    ref = text_statistics(real, cfg.repeat_n, cfg.distinct_n)
    r, d, h = mine["repeated_ngram_rate"], mine["distinct_n"], mine["entropy"]
    r_ref, d_ref, h_ref = ref["repeated_ngram_rate"], ref["distinct_n"], ref["entropy"]
    components = {
        "repetition": _clip((r - r_ref) / (1.0 - r_ref)) if r_ref < 1 else 0.0,
        "monotony": _clip((d_ref - d) / d_ref) if d_ref > 0 else 0.0,
        "collapse": _clip((h_ref - h) / h_ref) if h_ref > 0 else 0.0,
    }
    score = sum(components.values()) / 3.0
    samples = [tokenizer.decode(s) for s in sampled[:keep_samples]] if tokenizer else []
    return DegenerationReport(
        score=score,
        verdict=verdict(score),
        repeated_ngram_rate=r,
        distinct_n=d,
        entropy=h,
        reference=ref,
        components=components,
        samples=samples,
    )
