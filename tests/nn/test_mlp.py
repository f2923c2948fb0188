"""MLP surgery (:mod:`selfimprove.nn.mlp`): exact removals, mean folding, refits, refusals."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from torch import nn

from selfimprove.errors import ConfigError, StrategyError
from selfimprove.nn import ACTIVATIONS, cut_mlp, parse_mlp, prune_mlp, refit_next_layer
from selfimprove.nn.mlp import unit_importance
from selfimprove.seeding import torch_seeded
from selfimprove.tasks import ACTIVATIONS as TASK_ACTIVATIONS
from selfimprove.tasks import build_mlp


def _mlp(widths: list[int], activation: str = "relu", seed: int = 0) -> nn.Sequential:
    with torch_seeded(seed):
        return build_mlp(8, 3, {"widths": widths, "activation": activation, "dropout": 0.1})


def _lin(module: nn.Sequential, index: int) -> nn.Linear:
    layer = module[index]
    assert isinstance(layer, nn.Linear)
    return layer


def _inputs(n: int = 64, seed: int = 1) -> torch.Tensor:
    with torch_seeded(seed) as gen:
        return torch.randn(n, 8, generator=gen)


def _forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = module.eval()(x)
    return out


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same_state(module: nn.Module, snapshot: Mapping[str, torch.Tensor]) -> bool:
    state = module.state_dict()
    return state.keys() == snapshot.keys() and all(
        torch.equal(state[k], snapshot[k]) for k in snapshot
    )


# --------------------------------------------------------------------------- surgery
def test_prune_mlp_removing_units_with_zero_outgoing_weights_is_exact() -> None:
    module = _mlp([6, 5], activation="tanh")
    removed = {0: [1, 4], 1: [0, 2]}
    with torch.no_grad():  # kill the units to remove: they contribute nothing downstream
        _lin(module, 3).weight[:, removed[0]] = 0.0  # Linear 6 -> 5 reads layer 0
        _lin(module, 6).weight[:, removed[1]] = 0.0  # head 5 -> 3 reads layer 1
    x = _inputs()
    before = _snapshot(module)
    keep = [[0, 2, 3, 5], [1, 3, 4]]

    pruned = prune_mlp(module, keep)

    assert pruned is not module and _same_state(module, before)  # input left alone
    assert parse_mlp(pruned).widths == (4, 3)
    assert [tuple(m.weight.shape) for m in pruned if isinstance(m, nn.Linear)] == [
        (4, 8),
        (3, 4),
        (3, 3),
    ]
    assert sum(p.numel() for p in module.parameters()) == (8 * 6 + 6) + (6 * 5 + 5) + (5 * 3 + 3)
    assert sum(p.numel() for p in pruned.parameters()) == (8 * 4 + 4) + (4 * 3 + 3) + (3 * 3 + 3)
    torch.testing.assert_close(_forward(pruned, x), _forward(module, x))
    # the same cut on live units does change the outputs (the check above can fail)
    live = _mlp([6, 5], activation="tanh")
    assert not torch.allclose(_forward(prune_mlp(live, keep), x), _forward(live, x), atol=1e-3)


def test_prune_mlp_folds_means_of_constant_units_into_the_next_bias() -> None:
    module = _mlp([6])
    with torch.no_grad():  # units 2 and 5 ignore their input: ReLU(0.7) and ReLU(-0.3)
        _lin(module, 0).weight[[2, 5]] = 0.0
        _lin(module, 0).bias[[2, 5]] = torch.tensor([0.7, -0.3])
    x = _inputs()
    means = [torch.relu(_lin(module, 0)(x)).mean(dim=0).detach()]  # (6,)

    dropped = prune_mlp(module, [[0, 1, 3, 4]])
    folded = prune_mlp(module, [[0, 1, 3, 4]], unit_means=means)

    torch.testing.assert_close(_forward(folded, x), _forward(module, x))
    assert not torch.allclose(_forward(dropped, x), _forward(module, x), atol=1e-3)


def test_cut_mlp_removes_dead_units_first_and_exactly() -> None:
    module = _mlp([6, 4])
    with torch.no_grad():
        _lin(module, 3).weight[:, [0, 2, 5]] = 0.0  # three dead units in layer 0
        _lin(module, 6).weight[:, [1, 3]] = 0.0  # two dead units in layer 1
    x = _inputs(256)

    plain = cut_mlp(module, (3, 2), x, reconstruct=False)
    refit = cut_mlp(module, (3, 2), x, reconstruct=True)

    assert parse_mlp(plain).widths == parse_mlp(refit).widths == (3, 2)
    torch.testing.assert_close(_forward(plain, x), _forward(module, x))
    torch.testing.assert_close(_forward(refit, x), _forward(module, x), atol=1e-4, rtol=1e-4)


def test_refit_merges_duplicate_units_that_mean_replacement_cannot() -> None:
    module = _mlp([5])
    with torch.no_grad():  # unit 4 duplicates unit 1: same input weights and bias
        _lin(module, 0).weight[4] = _lin(module, 0).weight[1]
        _lin(module, 0).bias[4] = _lin(module, 0).bias[1]
    x = _inputs(256)
    logits = _forward(module, x)  # (256, 3): what the head gave before the cut
    means = [torch.relu(_lin(module, 0)(x)).mean(dim=0).detach()]

    mean_only = prune_mlp(module, [[0, 1, 2, 3]], unit_means=means)
    merged = refit_next_layer(mean_only, 0, x, logits, ridge=1e-10)

    assert not torch.allclose(_forward(mean_only, x), logits, atol=1e-3)
    torch.testing.assert_close(_forward(merged, x), logits, atol=1e-4, rtol=1e-4)


def test_prune_mlp_rejects_bad_indices_with_the_value() -> None:
    module = _mlp([6, 5])
    with pytest.raises(ConfigError, match=r"\[0, 6\).*\[0, 9\]"):
        prune_mlp(module, [[0, 9], [0]])
    with pytest.raises(ConfigError, match="repeat"):
        prune_mlp(module, [[1, 1], [0]])
    with pytest.raises(ConfigError, match="one index list per hidden layer"):
        prune_mlp(module, [[1]])
    with pytest.raises(ConfigError, match="at least one unit"):
        prune_mlp(module, [[], [0]])


def test_unit_importance_is_zero_for_dead_and_constant_units() -> None:
    module = _mlp([6])
    with torch.no_grad():
        _lin(module, 3).weight[:, 1] = 0.0  # unit 1: no outgoing weight
        _lin(module, 0).weight[4] = 0.0  # unit 4: a constant output
        _lin(module, 0).bias[4] = 0.5
    before = _snapshot(module)

    scores, means = unit_importance(module, 0, _inputs(128))

    assert scores.shape == means.shape == (6,) and scores.dtype == torch.float64
    assert scores[1] == 0.0 and scores[4] == 0.0 and means[4] == pytest.approx(0.5)
    assert bool((scores[[0, 2, 3, 5]] > 0).all())
    assert _same_state(module, before)


def test_parse_mlp_refuses_other_shapes_with_what_differs() -> None:
    with pytest.raises(StrategyError, match="is a Linear"):
        parse_mlp(nn.Linear(3, 2))
    with pytest.raises(StrategyError, match="not one of the activations"):
        parse_mlp(nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 2)))
    with pytest.raises(StrategyError, match="one activation type"):
        parse_mlp(
            nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
        )
    with pytest.raises(ConfigError, match="ridge must be > 0"):
        refit_next_layer(_mlp([4]), 0, _inputs(), torch.zeros(64, 3), ridge=0.0)


def test_the_tasks_build_mlp_uses_the_one_activation_table() -> None:
    assert TASK_ACTIVATIONS is ACTIVATIONS
    for name in ACTIVATIONS:
        assert parse_mlp(_mlp([5, 4], activation=name)).activation == name
