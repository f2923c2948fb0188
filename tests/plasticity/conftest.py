"""Shared fixtures: ``tiny`` pre-trained once per session (into the session's cache folder,
``$SELFIMPROVE_CACHE`` set by tests/conftest.py), one short run.

The test ``tiny`` is smaller than the default (64 dimensions, 64 positions, 300 steps) so the
whole folder runs in about a minute on two cores; it keeps the reference shape of 4 layers x 8
heads. Everything is seeded, and the root conftest pins torch to one thread, so every figure
below is the same at every run on the same machine.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from selfimprove.plasticity import (
    AdaptivePlasticitySystem,
    ByteTokenizer,
    DegenerationConfig,
    PlasticityConfig,
    TinySpec,
    TokenData,
    load_corpus,
    load_tiny,
    tokenize_corpus,
)

TEST_TINY = TinySpec(n_layer=4, n_head=8, n_embd=64, context=64, steps=300, batch_size=16)
CONTEXT = 64


def short_config(**overrides: object) -> PlasticityConfig:
    """A small but real plasticity config (few fine-tuning steps, few eval windows)."""
    base: dict[str, object] = {
        "seed": 0,
        "context": CONTEXT,
        "finetune_steps": 40,
        "eval_windows": 64,
        "importance_batches": 2,
        "latency_repeats": 15,
        "degeneration": DegenerationConfig(prompts=8, prompt_tokens=16, new_tokens=48),
        "tiny": TEST_TINY,
        "dashboard": True,
    }
    base.update(overrides)
    return PlasticityConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plasticity_home")


@pytest.fixture(scope="session")
def _tiny_cached(tiny_home: Path) -> torch.nn.Module:
    return load_tiny(TEST_TINY, home=tiny_home)


@pytest.fixture
def tiny(_tiny_cached: torch.nn.Module) -> torch.nn.Module:
    """A fresh copy of the session's pre-trained ``tiny`` (tests may change it)."""
    return copy.deepcopy(_tiny_cached).eval()


@pytest.fixture(scope="session")
def data() -> TokenData:
    return tokenize_corpus(load_corpus(None), ByteTokenizer())


@pytest.fixture(scope="session")
def short_run(
    tiny_home: Path, tmp_path_factory: pytest.TempPathFactory, _tiny_cached: torch.nn.Module
) -> Iterator[AdaptivePlasticitySystem]:
    """Two real cycles on ``tiny`` (prune a quarter, grow back a quarter of that, 40 steps)."""
    system = AdaptivePlasticitySystem(
        "tiny",
        None,
        tmp_path_factory.mktemp("plasticity_runs"),
        config=short_config(),
        home=tiny_home,
    )
    system.run_adaptive_optimization(
        max_cycles=2, initial_pruning_level=0.25, initial_growth_ratio=0.25
    )
    yield system
