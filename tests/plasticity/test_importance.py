"""Importance estimators and pruning plans, measured on ``tiny``."""

from __future__ import annotations

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.plasticity import (
    ESTIMATORS,
    TokenData,
    head_importance,
    heads_per_layer,
    perplexity,
    plan_growth,
    prune_iteratively,
    select_heads,
)

N_REMOVE = 16  # half of the 32 heads


def _batches(data: TokenData, n: int = 4) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [data.random_batch(64, 16, gen) for _ in range(n)]


def test_gradient_importance_beats_random_pruning_at_equal_heads_removed(
    tiny: torch.nn.Module, data: TokenData
) -> None:
    val = data.windows("validation", 64, 128)
    batches = _batches(data)
    base = perplexity(tiny, val)
    grad_model, removed, steps = prune_iteratively(tiny, N_REMOVE, "gradient", batches)
    assert sum(len(v) for v in removed.values()) == N_REMOVE
    assert len(steps) == 6  # steps of at most 10 % of the heads (3), re-scored after each
    grad_ppl = perplexity(grad_model, val)
    random_ppl = []
    for seed in range(3):
        model, _, _ = prune_iteratively(tiny, N_REMOVE, "random", batches, seed=seed)
        assert sum(heads_per_layer(model)) == 32 - N_REMOVE
        random_ppl.append(perplexity(model, val))
    print(
        f"\nperplexity {base:.3f}; 50% heads removed, no fine-tuning: gradient "
        f"{grad_ppl:.3f} (+{grad_ppl / base - 1:.1%}), random seeds 0-2 "
        + ", ".join(f"{p:.3f} (+{p / base - 1:.1%})" for p in random_ppl)
    )
    assert grad_ppl < min(random_ppl)


def test_every_estimator_scores_every_head_deterministically(
    tiny: torch.nn.Module, data: TokenData
) -> None:
    batches = _batches(data, 1)
    for method in ESTIMATORS:
        a = head_importance(tiny, batches, method, seed=3)
        b = head_importance(tiny, batches, method, seed=3)
        assert [len(s) for s in a] == [8, 8, 8, 8], method
        for sa, sb in zip(a, b, strict=True):
            assert torch.isfinite(sa).all(), method
            torch.testing.assert_close(sa, sb, rtol=0, atol=0)
            assert float(sa.norm()) == pytest.approx(1.0, abs=1e-5)  # per-layer L2 norm
    raw = head_importance(tiny, batches, "gradient", normalise=False)
    assert all(float(s.min()) >= 0 for s in raw)


def test_select_heads_ranks_globally_and_keeps_a_head_per_layer() -> None:
    scores = [torch.tensor([0.1, 0.2]), torch.tensor([0.05, 0.9, 0.01]), torch.tensor([0.5])]
    assert select_heads(scores, 2) == {1: [0, 2]}
    # Layer 1 keeps its best head (0.9) and layer 2 its only one, so 0.1 of layer 0 goes next.
    assert select_heads(scores, 3) == {0: [0], 1: [0, 2]}
    with pytest.raises(ConfigError, match="between 0 and 3"):
        select_heads(scores, 4)


def test_growth_plans_respect_caps_and_follow_demand() -> None:
    raw = [torch.tensor([1.0, 1.0]), torch.tensor([5.0]), torch.tensor([0.1, 0.1, 0.1])]
    plan = plan_growth(3, [2, 1, 3], strategy="importance", max_heads=[4, 2, 4], raw_importance=raw)
    assert plan == {0: 2, 1: 1}  # layer 1 is capped at 2 heads; then demand / (1 + added)
    assert plan_growth(2, [2, 1, 3], strategy="uniform", max_heads=[4, 4, 4]) == {0: 1, 1: 1}
    assert sum(plan_growth(9, [2, 1, 3], strategy="random", max_heads=[3, 2, 4]).values()) == 3
    with pytest.raises(ConfigError, match="unknown growth strategy"):
        plan_growth(1, [1], strategy="nope", max_heads=[2])
