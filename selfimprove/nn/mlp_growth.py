"""Function-preserving growth of ``build_mlp``-shaped MLPs (Net2Net, Chen et al. 2016).

A grown network computes exactly its parent's function before it trains on, so growth starts
from everything the parent learnt instead of from a fresh initialisation (network morphism,
Wei et al. 2016; hill climbing with morphisms, Elsken et al. 2017).

- :func:`widen_mlp` (Net2WiderNet): hidden layer ``i`` gets new units, each a copy of an
  existing one (incoming weights and bias copied); the next layer's outgoing weights of every
  unit and its copies are split between them so that their sum is the original weight. Exact for
  any element-wise activation. The split is uneven (seeded random fractions), so the copies get
  different gradients and drift apart when training resumes — an even split would keep them
  identical forever.
- :func:`deepen_mlp` (Net2DeeperNet): a new hidden layer initialised to the identity is inserted
  after hidden layer ``i``. Exact only when the activation is idempotent on its own outputs
  (``relu(relu(x)) = relu(x)``), so it is offered for ReLU models only (:func:`can_deepen`).

Both return a new module in the input's train/eval mode and leave the input alone. They are
written here because no maintained library offers Net2Net-style transforms on plain
``nn.Sequential`` MLPs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.mlp import ACTIVATIONS, MLPStructure, parse_mlp
from selfimprove.seeding import numpy_rng

__all__ = ["IDEMPOTENT_ACTIVATIONS", "can_deepen", "deepen_mlp", "widen_mlp"]

#: Activations with ``f(f(x)) = f(x)`` on their outputs: an identity layer after them is exact.
IDEMPOTENT_ACTIVATIONS = frozenset({"relu"})


def _new_linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    # skip_init: no throw-away initialisation, so no draw from the global RNG.
    layer = nn.utils.skip_init(
        nn.Linear, weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer


def widen_mlp(module: nn.Module, new_widths: Sequence[int], *, seed: int = 0) -> nn.Sequential:
    """A **new** MLP with wider hidden layers that computes exactly ``module``'s function.

    Args:
        module: A ``build_mlp``-shaped MLP (see :func:`~selfimprove.nn.mlp.parse_mlp`).
        new_widths: The hidden widths wanted, one per hidden layer, each at least the current.
        seed: Seeds which units are copied and how their outgoing weights are split.

    Returns:
        The wider MLP (same layout, activation and dropout).

    Raises:
        StrategyError: ``module`` is not a supported MLP.
        ConfigError: ``new_widths`` has the wrong length or would shrink a layer.
    """
    mlp = parse_mlp(module)
    seq = cast(nn.Sequential, module)
    widths = [int(w) for w in new_widths]
    if len(widths) != mlp.depth or any(w < old for w, old in zip(widths, mlp.widths, strict=True)):
        raise ConfigError(
            f"new_widths must give each of the {mlp.depth} hidden layers at least its current "
            f"width {list(mlp.widths)}, but got {widths}."
        )
    rng = numpy_rng("widen_mlp", seed)
    new_linears: dict[int, nn.Linear] = {}
    # For each hidden layer: which old unit every new unit copies, and its share of the
    # outgoing weight (shares of one old unit and its copies sum to 1).
    mapping: list[torch.Tensor] = []
    shares: list[torch.Tensor] = []
    for old, new in zip(mlp.widths, widths, strict=True):
        extra = rng.integers(0, old, size=new - old)
        g = torch.as_tensor([*range(old), *extra.tolist()], dtype=torch.long)
        raw = torch.as_tensor(rng.uniform(0.25, 0.75, size=new), dtype=torch.float64)
        totals = torch.zeros(old, dtype=torch.float64).index_add_(0, g, raw)
        mapping.append(g)
        shares.append(raw / totals[g])  # (new,): sums to 1 over each old unit's copies
    with torch.no_grad():
        for i, pos in enumerate(mlp.linear_positions):
            layer = cast(nn.Linear, seq[pos])
            w = layer.weight.detach().clone()  # (out_i, in_i)
            b = layer.bias.detach().clone()  # (out_i,)
            if i > 0:  # columns: split each old unit's outgoing weight between its copies
                share = shares[i - 1].to(w.device, w.dtype)
                w = w[:, mapping[i - 1]] * share  # (out_i, new_{i-1})
            if i < mlp.depth:  # rows: copies of the old units' incoming weights and biases
                w, b = w[mapping[i]], b[mapping[i]]  # (new_i, in), (new_i,)
            new_linears[pos] = _new_linear(w, b)
    return _assemble(seq, new_linears, module.training)


def can_deepen(structure: MLPStructure) -> str | None:
    """``None`` when :func:`deepen_mlp` preserves the function of an MLP of ``structure``,
    else why not."""
    if structure.depth == 0:
        return "the model has no hidden layer to repeat (it is a single Linear)"
    if structure.activation not in IDEMPOTENT_ACTIVATIONS:
        return (
            f"an identity layer after {structure.activation} changes the function "
            f"({structure.activation}({structure.activation}(x)) != {structure.activation}(x)); "
            f"deepening is exact only for {sorted(IDEMPOTENT_ACTIVATIONS)}"
        )
    return None


def deepen_mlp(module: nn.Module, after: int) -> nn.Sequential:
    """A **new** MLP with an identity hidden layer inserted after hidden layer ``after``.

    Args:
        module: A ``build_mlp``-shaped MLP with an idempotent activation (ReLU).
        after: Index of the hidden layer the new one repeats (0 = the first).

    Returns:
        The deeper MLP: the new layer has the width of layer ``after``, identity weights and
        zero bias, followed by the same activation (and dropout) as the others.

    Raises:
        StrategyError: ``module`` is not a supported MLP.
        ConfigError: ``after`` is not a hidden layer, or the activation is not idempotent.
    """
    mlp = parse_mlp(module)
    seq = cast(nn.Sequential, module)
    why = can_deepen(mlp)
    if why is not None:
        raise ConfigError(f"cannot deepen: {why}.")
    if not 0 <= after < mlp.depth:
        raise ConfigError(
            f"after must name a hidden layer in [0, {mlp.depth - 1}], but got {after=}."
        )
    width = mlp.widths[after]
    ref = cast(nn.Linear, seq[mlp.linear_positions[after]])
    eye = torch.eye(width, dtype=ref.weight.dtype, device=ref.weight.device)  # (w, w)
    inserted: list[nn.Module] = [
        _new_linear(eye, torch.zeros(width, dtype=eye.dtype, device=eye.device)),
        ACTIVATIONS[mlp.activation](),
    ]
    if mlp.dropout > 0:
        inserted.append(nn.Dropout(mlp.dropout))
    # The new block goes right after layer ``after``'s activation (and dropout).
    end = mlp.linear_positions[after + 1]
    layers = [copy.deepcopy(m) for m in seq]
    out = nn.Sequential(*layers[:end], *inserted, *layers[end:])
    out.train(module.training)
    return out


def _assemble(seq: nn.Sequential, linears: dict[int, nn.Linear], training: bool) -> nn.Sequential:
    layers = [linears[j] if j in linears else copy.deepcopy(m) for j, m in enumerate(seq)]
    out = nn.Sequential(*layers)
    out.train(training)
    return out
