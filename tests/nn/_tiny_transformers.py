"""Tiny random GPT-2 and Llama models built locally (nothing is downloaded), seeded."""

from __future__ import annotations

from typing import Any

import torch

from selfimprove.nn.transformer import family_named, quiet

VOCAB = 256


def tiny_gpt2(*, n_layer: int = 4, n_head: int = 4, seed: int = 0, **extra: Any) -> Any:
    """A random ``GPT2LMHeadModel``: width 64, ``n_head`` heads, byte vocabulary (``extra``
    overrides any config setting)."""
    family = family_named("gpt2")
    settings: dict[str, Any] = {
        "vocab_size": VOCAB,
        "n_positions": 64,
        "n_embd": 64,
        "n_layer": n_layer,
        "n_head": n_head,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    settings.update(extra)
    with quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return family.model_class()(family.config_class()(**settings)).eval()


def tiny_llama(*, seed: int = 0, attention_bias: bool = False, **extra: Any) -> Any:
    """A random ``LlamaForCausalLM``: hidden 64, 4 layers, 4 query heads of 16 in 2 key/value
    groups (2 query heads per group), byte vocabulary."""
    family = family_named("llama")
    settings: dict[str, Any] = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        "attention_bias": attention_bias,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    settings.update(extra)
    with quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.model_class()(family.config_class()(**settings)).eval()
        if attention_bias:  # transformers initialises biases to zero; make them count
            for name, p in model.named_parameters():
                if name.endswith("proj.bias"):
                    torch.nn.init.normal_(p, std=0.1)
        return model


def token_ids(batch: int, length: int, *, seed: int = 0) -> torch.Tensor:
    """Seeded random token ids, ``(batch, length)``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=gen)


def logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    """``(B, T, V)`` logits without grad."""
    with torch.no_grad():
        out: torch.Tensor = model(input_ids=x).logits
    return out
