"""The degeneration score: high for a model that loops, low for the trained model."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from selfimprove.plasticity import (
    DEGENERATE,
    HEALTHY,
    ByteTokenizer,
    DegenerationConfig,
    FinetuneConfig,
    TokenData,
    degeneration_score,
    finetune_,
    text_statistics,
)

CONFIG = DegenerationConfig(prompts=8, prompt_tokens=16, new_tokens=48, seed=0)


def _looping(tiny: torch.nn.Module, data: TokenData) -> torch.nn.Module:
    """``tiny`` fine-tuned (real steps) on "and then and then ...": it learns to loop."""
    loop = torch.tensor(list(b"and then " * 1000))
    looped = TokenData(loop, data.validation, data.test, 256)
    model = copy.deepcopy(tiny)
    finetune_(model, looped, FinetuneConfig(steps=40, lr=3e-3, batch_size=8, context=64), seed=0)
    return model.eval()


def test_degeneration_is_high_for_a_looping_model_and_low_for_the_trained_one(
    tiny: torch.nn.Module, data: TokenData
) -> None:
    trained = degeneration_score(tiny, data, CONFIG, tokenizer=ByteTokenizer())
    looping = degeneration_score(_looping(tiny, data), data, CONFIG, tokenizer=ByteTokenizer())
    print(
        f"\ndegeneration: trained {trained.score:.3f} ({trained.verdict}; rep "
        f"{trained.repeated_ngram_rate:.3f}, distinct-2 {trained.distinct_n:.3f}, entropy "
        f"{trained.entropy:.2f} bits; corpus {trained.reference}), looping {looping.score:.3f} "
        f"({looping.verdict}; rep {looping.repeated_ngram_rate:.3f}, distinct-2 "
        f"{looping.distinct_n:.3f}, entropy {looping.entropy:.2f} bits); sample: "
        f"{looping.samples[0]!r}"
    )
    assert trained.score <= HEALTHY and trained.verdict == "healthy"
    assert looping.score > DEGENERATE and looping.verdict == "degenerate"


def test_degeneration_is_deterministic(tiny: torch.nn.Module, data: TokenData) -> None:
    a = degeneration_score(tiny, data, CONFIG)
    b = degeneration_score(tiny, data, CONFIG)
    assert a == b


def test_text_statistics_on_known_sequences() -> None:
    looped = text_statistics([[1, 2, 3] * 10], repeat_n=4, distinct_n=2)
    assert looped["repeated_ngram_rate"] > 0.8
    assert looped["entropy"] == pytest.approx(math.log2(3))
    fresh = text_statistics([list(range(30))], repeat_n=4, distinct_n=2)
    assert fresh["repeated_ngram_rate"] == 0.0 and fresh["distinct_n"] == 1.0
