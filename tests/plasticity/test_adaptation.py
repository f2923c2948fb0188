"""Level schedule and the fine-tuning recipe: a rejection retries smaller, success goes further,
and every fine-tuning path (cycles, ``heads`` strategy, benchmark) shares one learning rate that
does not undo a pre-trained model."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmarks.head_pruning import Config
from selfimprove.plasticity import (
    FINETUNE_LR,
    FinetuneConfig,
    PlasticityConfig,
    TokenData,
    adapt_levels,
    finetune_,
    perplexity,
)
from selfimprove.plasticity._adaptation import MAX_PRUNING_LEVEL
from selfimprove.strategies._heads import HeadsConfig

from .conftest import CONTEXT


def test_a_rejected_cycle_halves_the_level_and_leaves_growth_alone() -> None:
    level, ratio, label = adapt_levels(0.2, 0.5, accepted=False, margin=0.0)
    assert level == pytest.approx(0.1) and ratio == 0.5
    assert "retry" in label


@pytest.mark.parametrize(
    ("margin", "expected"), [(1.0, 0.4), (0.5, 0.3), (0.0, 0.2), (2.0, 0.4), (-1.0, 0.2)]
)
def test_an_accepted_cycle_raises_the_level_by_the_tolerance_it_left(
    margin: float, expected: float
) -> None:
    level, _ratio, label = adapt_levels(0.2, 0.5, accepted=True, margin=margin)
    assert level == pytest.approx(expected)
    assert "accepted" in label


def test_the_level_never_passes_the_cap_and_growth_shrinks_only_with_room() -> None:
    level, ratio, _ = adapt_levels(0.4, 0.5, accepted=True, margin=1.0)
    assert level == MAX_PRUNING_LEVEL and ratio == pytest.approx(0.4)
    _, ratio, _ = adapt_levels(0.2, 0.5, accepted=True, margin=0.2)
    assert ratio == 0.5


def test_every_fine_tuning_path_defaults_to_one_rate_for_pre_trained_models() -> None:
    assert FINETUNE_LR == 3e-4
    assert FinetuneConfig().lr == FINETUNE_LR
    assert PlasticityConfig().lr == FINETUNE_LR
    assert PlasticityConfig().finetune_config(128).lr == FINETUNE_LR
    assert HeadsConfig().lr == FINETUNE_LR
    # The benchmark's reference and fixed methods fine-tune with the cycles' recipe.
    for mode in ("smoke", "quick", "full"):
        assert Config.for_mode(mode).lr == FINETUNE_LR, mode


def test_the_default_rate_does_not_undo_pre_training_where_1e_3_does(
    tiny: torch.nn.Module, data: TokenData
) -> None:
    val = data.windows("validation", CONTEXT, 64)
    start = perplexity(tiny, val)
    after: dict[float, float] = {}
    for lr in (FINETUNE_LR, 1e-3):
        model = copy.deepcopy(tiny)
        cfg = FinetuneConfig(steps=15, lr=lr, batch_size=8, context=CONTEXT, warmup_steps=1)
        finetune_(model, data, cfg, seed=0)
        after[lr] = perplexity(model.eval(), val)
    print(f"\nstart {start:.4f}; 15 steps: {after}")
    assert after[FINETUNE_LR] <= start * 1.005
    assert after[FINETUNE_LR] < after[1e-3]
