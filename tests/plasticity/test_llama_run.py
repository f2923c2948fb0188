"""A plasticity run on a Llama-family model from a local save_pretrained folder."""

from __future__ import annotations

from pathlib import Path

import torch

from selfimprove.nn.transformer import family_of, heads_per_layer
from selfimprove.plasticity import AdaptivePlasticitySystem
from selfimprove.store import Store
from tests.nn._tiny_transformers import tiny_llama

from .conftest import short_config


def test_a_llama_folder_runs_a_cycle_pruning_key_value_groups(tmp_path: Path) -> None:
    model = tiny_llama(max_position_embeddings=128)  # 4 layers x 2 key/value groups
    model.save_pretrained(tmp_path / "llama")
    system = AdaptivePlasticitySystem(
        str(tmp_path / "llama"),
        None,
        tmp_path / "out",
        config=short_config(dashboard=False),
        home=tmp_path / "home",
    )
    results = system.run_adaptive_optimization(
        max_cycles=1, initial_pruning_level=0.3, initial_growth_ratio=0.0
    )
    (cycle,) = results.cycles
    assert family_of(system.model_).name == "llama"
    # the ledger records the run's model under its own family
    store = Store(home=tmp_path / "home")
    try:
        assert [m.family for m in store.list_models()] == ["llama"]
    finally:
        store.close()
    assert results.start["heads"] == 8
    if cycle.accepted:  # groups went, and q/k/v/o stayed consistent: the model still runs
        assert sum(heads_per_layer(system.model_)) == cycle.heads_after < 8
    else:  # rolled back to the start exactly
        assert heads_per_layer(system.model_) == [2, 2, 2, 2]
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.isfinite(system.model_(input_ids=x).logits).all()
    assert "unpruned reference" in cycle.reason
