"""Gates, structural surgery and growth on a real pre-trained ``tiny``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selfimprove.errors import CheckpointError, ConfigError
from selfimprove.plasticity import (
    HeadGates,
    TokenData,
    build_gpt2,
    count_parameters,
    generate,
    grow_heads,
    heads_per_layer,
    load_model,
    model_spec,
    prune_heads,
    save_model,
)

REMOVE = {0: [1, 3], 1: [0, 2, 4, 5, 6, 7, 3], 2: [7], 3: [0, 5]}


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = model(input_ids=x).logits
    return logits


def test_gated_logits_equal_pruned_logits(tiny: torch.nn.Module, data: TokenData) -> None:
    x = data.windows("validation", 64, 4)[:, :-1]  # (4, 64)
    with torch.no_grad(), HeadGates.mask(tiny, REMOVE):
        gated = tiny(input_ids=x).logits
    pruned = prune_heads(tiny, REMOVE)
    full = _logits(tiny, x)
    assert heads_per_layer(pruned) == [6, 1, 7, 6]
    assert count_parameters(pruned) < count_parameters(tiny)
    torch.testing.assert_close(_logits(pruned, x), gated, rtol=0, atol=1e-5)
    # The gates really act (else the equality above would prove nothing).
    assert float((gated - full).abs().max()) > 1e-2


def test_gates_outside_the_block_change_nothing(tiny: torch.nn.Module, data: TokenData) -> None:
    x = data.windows("validation", 64, 2)[:, :-1]
    before = _logits(tiny, x)
    with HeadGates.mask(tiny, REMOVE):
        pass
    torch.testing.assert_close(_logits(tiny, x), before, rtol=0, atol=0)


def test_surgery_returns_a_new_model_and_leaves_its_input_alone(tiny: torch.nn.Module) -> None:
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    pruned = prune_heads(tiny, REMOVE)
    grown, _ = grow_heads(pruned, {1: 3}, seed=0)
    assert pruned is not tiny and grown is not pruned
    assert heads_per_layer(tiny) == [8, 8, 8, 8]
    assert heads_per_layer(pruned) == [6, 1, 7, 6]
    for k, v in tiny.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_growth_leaves_logits_unchanged_then_the_new_heads_learn(
    tiny: torch.nn.Module, data: TokenData
) -> None:
    x = data.windows("validation", 64, 4)[:, :-1]
    pruned = prune_heads(tiny, REMOVE)
    grown, positions = grow_heads(pruned, {0: 1, 1: 3, 3: 2}, seed=7)
    assert heads_per_layer(grown) == [7, 4, 7, 8]
    assert positions == {0: [6], 1: [1, 2, 3], 3: [6, 7]}
    torch.testing.assert_close(_logits(grown, x), _logits(pruned, x), rtol=0, atol=1e-5)
    # The new heads are not dead: their output projection gets a gradient at once.
    attn = grown.transformer.h[1].attn
    loss = torch.nn.functional.cross_entropy(
        grown(input_ids=x).logits.reshape(-1, 256),
        data.windows("validation", 64, 4)[:, 1:].reshape(-1),
    )
    loss.backward()
    d = attn.head_dim
    assert float(attn.c_proj.weight.grad[d : 4 * d].abs().sum()) > 0


def test_uneven_model_rebuilds_from_its_spec_and_checkpoint(
    tiny: torch.nn.Module, data: TokenData, tmp_path: Path
) -> None:
    x = data.windows("validation", 64, 2)[:, :-1]
    model, _ = grow_heads(prune_heads(tiny, REMOVE), {1: 2}, seed=0)
    saved = save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert heads_per_layer(again) == heads_per_layer(model) == [6, 3, 7, 6]
    assert model_spec(again) == model_spec(model)
    torch.testing.assert_close(_logits(again, x), _logits(model, x), rtol=0, atol=0)
    blank = build_gpt2(model_spec(model))
    assert heads_per_layer(blank) == [6, 3, 7, 6]
    # A flipped byte is refused before anything is parsed.
    raw = bytearray(saved.weights.read_bytes())
    raw[-1] ^= 0xFF
    saved.weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_model(tmp_path / "m")


def test_uneven_heads_generate_with_the_kv_cache(tiny: torch.nn.Module, data: TokenData) -> None:
    model = prune_heads(tiny, REMOVE)
    prompts = data.windows("validation", 64, 2)[:, :16]
    a = generate(model, prompts, 20, generator=torch.Generator().manual_seed(0))
    b = generate(model, prompts, 20, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 20) and torch.equal(a, b)


def test_bad_surgery_requests_say_what_is_wrong(tiny: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="keep at least one"):
        prune_heads(tiny, {0: list(range(8))})
    with pytest.raises(ConfigError, match="out of range"):
        prune_heads(tiny, {0: [8]})
    with pytest.raises(ConfigError, match="listed twice"):
        prune_heads(tiny, {0: [1, 1]})
    with pytest.raises(ConfigError, match="layer 9"):
        grow_heads(tiny, {9: 1}, seed=0)
    with pytest.raises(ConfigError, match="shape"):
        HeadGates(tiny, [torch.ones(7)] * 4)
