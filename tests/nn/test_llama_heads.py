"""Llama (grouped-query attention) as the second family: gates, surgery, growth, importance,
specs and checkpoints on a tiny random Llama built locally; a unit is a key/value group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.measure.finetune import new_head_masks
from selfimprove.nn.transformer import (
    ESTIMATORS,
    HeadGates,
    build_model,
    count_parameters,
    family_of,
    family_of_config,
    grow_heads,
    grown_head_masks,
    head_dim,
    head_importance,
    heads_per_layer,
    load_model,
    model_spec,
    prune_heads,
    prune_iteratively,
    save_model,
    sequence_nll,
    total_heads,
)
from tests.nn._tiny_transformers import logits, tiny_gpt2, tiny_llama, token_ids

REMOVE = {0: [1], 2: [0]}


def test_a_llama_unit_is_a_key_value_group() -> None:
    model = tiny_llama()
    assert family_of(model).name == "llama"
    assert heads_per_layer(model) == [2, 2, 2, 2]  # 4 query heads in 2 groups per layer
    assert total_heads(model) == 8 and head_dim(model) == 16
    assert family_of(tiny_gpt2()).name == "gpt2"


@pytest.mark.parametrize("attention_bias", [False, True])
def test_gating_a_group_to_zero_equals_pruning_it(attention_bias: bool) -> None:
    # Gates scale only o_proj's input columns of a group's query heads; pruning also removes
    # the group's k and v rows. Equal logits therefore also prove the group order: the query
    # heads kept must be exactly those that read the kept key/value heads (repeat_kv's order).
    model = tiny_llama(attention_bias=attention_bias)
    x = token_ids(3, 24)
    with torch.no_grad(), HeadGates.mask(model, REMOVE):
        gated = model(input_ids=x).logits
    pruned = prune_heads(model, REMOVE)
    assert heads_per_layer(pruned) == [1, 2, 1, 2]
    attn = pruned.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (2 * 16, 64)  # one group: 2 query heads
    assert attn.k_proj.weight.shape == attn.v_proj.weight.shape == (16, 64)
    assert attn.o_proj.weight.shape == (64, 2 * 16)
    assert count_parameters(pruned) < count_parameters(model)
    torch.testing.assert_close(logits(pruned, x), gated, rtol=0, atol=1e-5)
    assert float((gated - logits(model, x)).abs().max()) > 1e-2  # the gates really act


def test_surgery_leaves_its_input_alone() -> None:
    model = tiny_llama()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grown, _ = grow_heads(prune_heads(model, REMOVE), {1: 1}, seed=0)
    assert grown is not model and heads_per_layer(model) == [2, 2, 2, 2]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_growth_adds_groups_that_change_nothing_until_trained() -> None:
    model = prune_heads(tiny_llama(), REMOVE)
    x = token_ids(3, 24, seed=1)
    grown, positions = grow_heads(model, {0: 2, 1: 1}, seed=7)
    assert heads_per_layer(grown) == [3, 3, 1, 2]
    assert positions == {0: [1, 2], 1: [2]}
    torch.testing.assert_close(logits(grown, x), logits(model, x), rtol=0, atol=1e-5)
    again, _ = grow_heads(model, {0: 2, 1: 1}, seed=7)
    for (k, a), (_, b) in zip(grown.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k  # seeded
    attn = grown.model.layers[0].self_attn
    assert (
        float(attn.k_proj.weight.detach()[16:].abs().sum()) > 0
    )  # new q, k, v are drawn, not zero
    # The new groups are not dead: their o_proj columns get a gradient at once.
    sequence_nll(grown, token_ids(3, 25, seed=2)).sum().backward()
    assert float(attn.o_proj.weight.grad[:, 2 * 16 :].abs().sum()) > 0


def test_gradient_importance_is_the_loss_slope_of_each_group_gate() -> None:
    model = tiny_llama()
    windows = token_ids(1, 17, seed=3)
    scores = head_importance(model, [windows], "gradient", normalise=False)
    assert [len(s) for s in scores] == [2, 2, 2, 2]  # one score per group
    eps = 1e-2
    for layer, unit in [(0, 0), (1, 1), (3, 0)]:
        losses = []
        for g in (1 + eps, 1 - eps):
            values = [torch.ones(2) for _ in range(4)]
            values[layer][unit] = g
            with torch.no_grad(), HeadGates(model, values):
                losses.append(float(sequence_nll(model, windows)))
        slope = abs(losses[0] - losses[1]) / (2 * eps)
        assert float(scores[layer][unit]) == pytest.approx(slope, rel=1e-2, abs=1e-6)


def test_entropy_importance_reads_the_attention_transformers_computes() -> None:
    model = tiny_llama(attn_implementation="eager")
    with torch.no_grad():  # sharper attention than the random init's near-uniform one
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(20.0)
            layer.self_attn.k_proj.weight.mul_(20.0)
    windows = token_ids(3, 21, seed=4)
    scores = head_importance(model, [windows], "entropy", normalise=False)
    with torch.no_grad():
        attentions = model(input_ids=windows[:, :-1], output_attentions=True).attentions
    for layer, p in enumerate(attentions):  # (B, 4 query heads, T, T) after rotary and softmax
        t = p.shape[-1]
        ent = -(p * p.clamp_min(1e-12).log()).sum(-1)[..., 1:]  # (B, H, T-1)
        norm = ent / torch.log(torch.arange(2, t + 1, dtype=torch.float32))
        per_head = 1 - norm.mean(-1)  # (B, H)
        expected = per_head.view(3, 2, 2).mean(-1).mean(0)  # groups of 2 consecutive heads
        torch.testing.assert_close(scores[layer], expected, rtol=1e-4, atol=1e-5)
    assert float(torch.cat(scores).max()) > 0.05  # not the trivial uniform case


def test_every_estimator_scores_every_group_deterministically() -> None:
    model, _ = grow_heads(prune_heads(tiny_llama(), REMOVE), {1: 1}, seed=0)
    batches = [token_ids(2, 17, seed=5)]
    for method in ESTIMATORS:
        a = head_importance(model, batches, method, seed=1)
        b = head_importance(model, batches, method, seed=1)
        assert [len(s) for s in a] == [1, 3, 1, 2], method
        for s, t in zip(a, b, strict=True):
            assert torch.equal(s, t), method
            assert torch.isfinite(s).all(), method


def test_iterative_pruning_then_rebuild_from_spec_and_checkpoint(tmp_path: Path) -> None:
    model = tiny_llama()
    x = token_ids(2, 24, seed=6)
    pruned, removed, steps = prune_iteratively(
        model, 3, "gradient", [token_ids(2, 17, seed=7)], step_fraction=0.25
    )
    assert sum(len(v) for v in removed.values()) == 3 and len(steps) == 2
    assert total_heads(pruned) == 5 and min(heads_per_layer(pruned)) == 1
    spec = model_spec(pruned)
    assert family_of_config(spec["config"]).name == "llama"
    blank = build_model(spec)
    assert heads_per_layer(blank) == heads_per_layer(pruned)
    blank.load_state_dict(pruned.state_dict(), strict=True)
    torch.testing.assert_close(logits(blank, x), logits(pruned, x), rtol=0, atol=0)
    save_model(pruned, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert model_spec(again) == spec
    torch.testing.assert_close(logits(again, x), logits(pruned, x), rtol=0, atol=0)


def test_uneven_groups_generate_with_the_kv_cache() -> None:
    model, _ = grow_heads(prune_heads(tiny_llama(), REMOVE), {1: 1}, seed=0)
    prompt = token_ids(2, 8, seed=8)
    with torch.no_grad():
        cached = model.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True)
    seq = prompt
    for _ in range(10):  # greedy without a cache: the whole sequence every step
        seq = torch.cat([seq, logits(model, seq)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(cached, seq)


def test_grown_head_masks_cover_exactly_the_new_units() -> None:
    model, positions = grow_heads(tiny_llama(attention_bias=True), {2: 1}, seed=0)
    masks = grown_head_masks(model, positions)
    attn = model.model.layers[2].self_attn
    assert set(masks) == {
        attn.q_proj.weight,
        attn.q_proj.bias,
        attn.k_proj.weight,
        attn.k_proj.bias,
        attn.v_proj.weight,
        attn.v_proj.bias,
        attn.o_proj.weight,
    }
    assert torch.equal(masks[attn.q_proj.weight][64:], torch.ones(32, 64))  # group 2: rows 64..95
    assert float(masks[attn.q_proj.weight][:64].sum()) == 0
    assert torch.equal(masks[attn.k_proj.bias], torch.tensor([0.0] * 32 + [1.0] * 16))
    assert torch.equal(masks[attn.o_proj.weight][:, 64:], torch.ones(64, 32))
    assert float(masks[attn.o_proj.weight][:, :64].sum()) == 0
    # On GPT-2 the family's masks are the fine-tuner's own.
    gpt2, new = grow_heads(tiny_gpt2(), {0: 2, 3: 1}, seed=0)
    ours, theirs = grown_head_masks(gpt2, new), new_head_masks(gpt2, new)
    assert set(ours) == set(theirs)
    for p, m in ours.items():
        assert torch.equal(m, theirs[p])


def test_bad_requests_and_unknown_models_say_what_is_wrong() -> None:
    model = tiny_llama()
    with pytest.raises(ConfigError, match="keep at least one"):
        prune_heads(model, {0: [0, 1]})
    with pytest.raises(ConfigError, match=r"out of range \[0, 2\)"):
        prune_heads(model, {0: [2]})
    with pytest.raises(ConfigError, match=r"shape \(2,\)"):
        HeadGates(model, [torch.ones(4)] * 4)
    with pytest.raises(ConfigError, match="GPT2LMHeadModel, LlamaForCausalLM models, not Linear"):
        heads_per_layer(torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="not 'bert'"):
        build_model({"config": {"model_type": "bert"}, "heads_per_layer": [1]})
