"""Function-preserving growth: a grown MLP computes its parent's function before training."""

from __future__ import annotations

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.nn.mlp import parse_mlp
from selfimprove.nn.mlp_growth import can_deepen, deepen_mlp, widen_mlp
from selfimprove.tasks import build_mlp

ACTS = ("relu", "gelu", "tanh", "silu")


def _mlp(widths: list[int], activation: str, dropout: float = 0.0) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return build_mlp(6, 3, {"widths": widths, "activation": activation, "dropout": dropout})


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("widths", [[4], [5, 3], [2, 7, 4]])
def test_widening_preserves_the_function(activation: str, widths: list[int]) -> None:
    parent = _mlp(widths, activation, dropout=0.3).eval()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    x = torch.randn(128, 6)
    wider = [2 * w + 1 for w in widths]
    child = widen_mlp(parent, wider, seed=3)
    assert list(parse_mlp(child).widths) == wider
    assert not child.training  # the parent's mode is kept
    with torch.no_grad():
        assert float((child(x) - parent(x)).abs().max()) <= 1e-5
    assert all(torch.equal(before[k], v) for k, v in parent.state_dict().items())  # untouched


@pytest.mark.parametrize("after", [0, 1])
def test_deepening_a_relu_mlp_preserves_the_function(after: int) -> None:
    parent = _mlp([5, 4], "relu", dropout=0.2).eval()
    x = torch.randn(128, 6)
    child = deepen_mlp(parent, after).eval()
    widths = [5, 4]
    grown = [*widths[: after + 1], widths[after], *widths[after + 1 :]]
    assert list(parse_mlp(child).widths) == grown
    with torch.no_grad():
        assert float((child(x) - parent(x)).abs().max()) <= 1e-5


def test_copies_get_uneven_shares_so_training_can_separate_them() -> None:
    parent = _mlp([3], "tanh")
    child = widen_mlp(parent, [6], seed=0)
    head = child[-1].weight  # (3 outputs, 6 hidden): copies of a unit share its column unevenly
    first = child[0].weight  # (6, 6): copied rows are equal
    rows = [tuple(r.tolist()) for r in first]
    for j in range(3, 6):
        twin = rows.index(rows[j])  # the original unit it copies
        assert not torch.allclose(head[:, j], head[:, twin])


def test_widening_is_seeded() -> None:
    parent = _mlp([4, 4], "relu")
    a, b = widen_mlp(parent, [8, 8], seed=1), widen_mlp(parent, [8, 8], seed=1)
    c = widen_mlp(parent, [8, 8], seed=2)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert any(not torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in a.state_dict())


def test_growth_refuses_what_it_cannot_do_exactly() -> None:
    with pytest.raises(ConfigError, match="at least its current width"):
        widen_mlp(_mlp([4], "relu"), [3])
    with pytest.raises(ConfigError, match="each of the 1 hidden layers"):
        widen_mlp(_mlp([4], "relu"), [8, 8])
    assert can_deepen(parse_mlp(_mlp([4], "tanh"))) is not None
    with pytest.raises(ConfigError, match="deepening is exact only for"):
        deepen_mlp(_mlp([4], "tanh"), 0)
    with pytest.raises(ConfigError, match="after must name a hidden layer"):
        deepen_mlp(_mlp([4], "relu"), 1)
