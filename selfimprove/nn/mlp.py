"""MLP structural surgery: transforms that return a new, smaller ``build_mlp``-shaped MLP.

A ``build_mlp`` MLP is ``nn.Sequential(Linear, activation, [Dropout], ..., Linear head)``.
:func:`parse_mlp` reads its structure; :func:`prune_mlp` removes hidden units by slicing weight
rows (the cut layer) and columns (the next layer), folding the removed units' means into the next
bias; :func:`unit_importance` scores units by the disturbance their removal causes
(``std_n(h_nj) * ||W_next[:, j]||_2``); :func:`refit_next_layer` refits the next Linear by
ridge least squares; :func:`cut_mlp` chains them, layer by layer. Every transform leaves its
input alone. The ``prune`` strategy (:mod:`selfimprove.strategies._prune`) explains the method
and the measurements behind it.

Nothing here knows about tasks: :data:`ACTIVATIONS` is the one table of activations, which the
built-in tasks' ``build_mlp`` uses too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from selfimprove.errors import ConfigError, StrategyError

__all__ = [
    "ACTIVATIONS",
    "RIDGE",
    "MLPStructure",
    "cut_mlp",
    "parse_mlp",
    "prune_mlp",
    "refit_next_layer",
    "unit_importance",
]

#: The activations a ``build_mlp`` MLP may use, by params key.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
#: Relative ridge penalty of the least-squares refit (see :func:`refit_next_layer`).
RIDGE = 1e-4


# --------------------------------------------------------------------------- structure
@dataclass(frozen=True)
class MLPStructure:
    """What :func:`parse_mlp` found in a ``build_mlp``-shaped ``nn.Sequential``.

    Attributes:
        linear_positions: Indices of the ``nn.Linear`` layers in the Sequential, hidden layers
            first, the head last.
        widths: Output widths of the hidden layers (one per hidden layer).
        activation: Key of the activation in :data:`ACTIVATIONS`.
        dropout: Dropout probability after each activation (0.0: no Dropout modules).
    """

    linear_positions: tuple[int, ...]
    widths: tuple[int, ...]
    activation: str
    dropout: float

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)

    def params(self, widths: Sequence[int]) -> dict[str, Any]:
        """``build_mlp`` params of this structure with hidden ``widths``."""
        return {
            "widths": [int(w) for w in widths],
            "activation": self.activation,
            "dropout": self.dropout,
        }


def _linear(seq: nn.Sequential, pos: int) -> nn.Linear:
    layer = seq[pos]
    if not isinstance(layer, nn.Linear):  # parse_mlp found a Linear here: a changed module
        raise StrategyError(f"expected nn.Linear at [{pos}], found {type(layer).__name__}.")
    return layer


def _activation_name(layer: nn.Module) -> str | None:
    for name, cls in ACTIVATIONS.items():
        # repr also compares settings (e.g. GELU(approximate='tanh') is not build_mlp's GELU).
        if type(layer) is cls and repr(layer) == repr(cls()):
            return name
    return None


def parse_mlp(module: nn.Module, *, purpose: str = "prune") -> MLPStructure:
    """Read the structure of a ``build_mlp``-shaped MLP.

    Args:
        module: The model.
        purpose: What needs the structure, named in the errors (``prune``, ``grow``).

    Returns:
        Its layer positions, hidden widths, activation and dropout.

    Raises:
        StrategyError: ``module`` is not ``nn.Sequential(Linear, activation, [Dropout], ...,
            Linear)`` with biases, one activation type and one dropout probability; the
            message says what differs.
    """
    shape = "nn.Sequential(Linear, activation, [Dropout], ..., Linear) as build_mlp makes"
    if not isinstance(module, nn.Sequential):
        raise StrategyError(
            f"{purpose} needs an {shape}, but the model is a {type(module).__name__}."
        )
    layers = list(module)
    positions: list[int] = []
    linears: list[nn.Linear] = []
    acts: set[str] = set()
    drops: list[float] = []
    pos = 0
    while True:
        layer = layers[pos] if pos < len(layers) else None
        if not isinstance(layer, nn.Linear):
            got = type(layer).__name__ if layer is not None else "the end of the model"
            raise StrategyError(
                f"{purpose} needs an {shape}; expected Linear at [{pos}], got {got}."
            )
        if layer.bias is None:
            raise StrategyError(f"{purpose} needs Linear layers with a bias; [{pos}] has none.")
        if linears and layer.in_features != linears[-1].out_features:
            raise StrategyError(
                f"Linear [{pos}] takes {layer.in_features} features but the layer before "
                f"gives {linears[-1].out_features}."
            )
        positions.append(pos)
        linears.append(layer)
        if pos == len(layers) - 1:
            break
        act = _activation_name(layers[pos + 1])
        if act is None:
            raise StrategyError(
                f"{purpose} needs an {shape}; [{pos + 1}] is {layers[pos + 1]!r}, not one of the "
                f"activations {sorted(ACTIVATIONS)} with default settings."
            )
        acts.add(act)
        pos += 2
        drop = layers[pos] if pos < len(layers) else None
        if isinstance(drop, nn.Dropout):
            drops.append(float(drop.p))
            pos += 1
        else:
            drops.append(0.0)
    if len(acts) > 1:
        raise StrategyError(
            f"{purpose} needs one activation type, but the model mixes {sorted(acts)}."
        )
    if len(set(drops)) > 1:
        raise StrategyError(f"{purpose} needs one dropout probability, but the model uses {drops}.")
    widths = tuple(lin.out_features for lin in linears[:-1])
    return MLPStructure(
        linear_positions=tuple(positions),
        widths=widths,
        activation=acts.pop() if acts else "relu",
        dropout=drops[0] if drops else 0.0,
    )


# --------------------------------------------------------------------------- surgery
def _as_index(keep: Sequence[int] | torch.Tensor, width: int, layer: int) -> torch.Tensor:
    idx = torch.as_tensor(keep, dtype=torch.long).reshape(-1)
    if idx.numel() == 0:
        raise ConfigError(f"hidden layer {layer} must keep at least one unit, but got none.")
    if int(idx.min()) < 0 or int(idx.max()) >= width:
        raise ConfigError(
            f"keep indices of hidden layer {layer} must be in [0, {width}), but got {idx.tolist()}."
        )
    uniq = torch.unique(idx)  # sorted: units keep their original order
    if len(uniq) != len(idx):
        raise ConfigError(f"keep indices of hidden layer {layer} repeat a unit: {idx.tolist()}.")
    return uniq


def prune_mlp(
    module: nn.Module,
    keep: Sequence[Sequence[int] | torch.Tensor],
    *,
    unit_means: Sequence[torch.Tensor | None] | None = None,
) -> nn.Sequential:
    """A **new** MLP keeping only the listed hidden units (the input is left alone).

    Hidden layer ``i`` keeps the rows ``keep[i]`` of its weight and bias; the layer after it
    keeps the same columns. With ``unit_means[i]`` (the mean post-activation output of each
    unit of hidden layer ``i``), the removed units' mean contribution ``W_next[:, removed] @
    mean[removed]`` is added to the next layer's bias, so a removed unit whose output is
    constant changes nothing. A removed unit whose outgoing weights are zero never changes
    anything.

    Args:
        module: A ``build_mlp``-shaped MLP (see :func:`parse_mlp`).
        keep: For each hidden layer, the indices of the units to keep (any order, no repeats).
        unit_means: For each hidden layer, a ``(width,)`` tensor of mean activations, or
            ``None`` (for all layers, or per layer) to drop removed units without compensation.

    Returns:
        The smaller MLP, with the same layer layout, activation and dropout, in the input's
        train/eval mode.

    Raises:
        StrategyError: ``module`` is not a supported MLP.
        ConfigError: ``keep`` or ``unit_means`` does not fit the hidden layers.
    """
    mlp = parse_mlp(module)
    seq = cast(nn.Sequential, module)  # parse_mlp checked it
    if len(keep) != mlp.depth:
        raise ConfigError(
            f"keep needs one index list per hidden layer ({mlp.depth}), but got {len(keep)}."
        )
    kept = [
        _as_index(k, width, i) for i, (k, width) in enumerate(zip(keep, mlp.widths, strict=True))
    ]
    means: list[torch.Tensor | None] = (
        list(unit_means) if unit_means is not None else [None] * mlp.depth
    )
    if len(means) != mlp.depth:
        raise ConfigError(
            f"unit_means needs one entry per hidden layer ({mlp.depth}), but got {len(means)}."
        )
    for i, (mean, width) in enumerate(zip(means, mlp.widths, strict=True)):
        if mean is not None and tuple(mean.shape) != (width,):
            raise ConfigError(
                f"unit_means of hidden layer {i} must have shape ({width},), but got "
                f"{tuple(mean.shape)}."
            )

    new_linears: dict[int, nn.Linear] = {}
    with torch.no_grad():
        for i, pos in enumerate(mlp.linear_positions):
            old = _linear(seq, pos)
            w = old.weight.detach()  # (out_i, in_i)
            b = old.bias.detach().clone()  # (out_i,)
            if i > 0:  # columns: the previous hidden layer's kept units
                mu = means[i - 1]
                if mu is not None:
                    removed = torch.ones(mlp.widths[i - 1], dtype=torch.bool, device=w.device)
                    removed[kept[i - 1]] = False
                    # (out_i, r) @ (r,) -> (out_i,): what the removed units added on average
                    b = b + w[:, removed] @ mu.to(w.dtype)[removed]
                w = w[:, kept[i - 1]]  # (out_i, k_{i-1})
            if i < mlp.depth:  # rows: this hidden layer's kept units
                w, b = w[kept[i]], b[kept[i]]  # (k_i, in), (k_i,)
            # skip_init: no throw-away initialisation, so no draw from the global RNG.
            new = nn.utils.skip_init(
                nn.Linear, w.shape[1], w.shape[0], device=w.device, dtype=w.dtype
            )
            new.weight.copy_(w)
            new.bias.copy_(b)
            new_linears[pos] = new
    layers = [new_linears[j] if j in new_linears else copy.deepcopy(m) for j, m in enumerate(seq)]
    out = nn.Sequential(*layers)
    out.train(module.training)
    return out


# --------------------------------------------------------------------------- importance
def _forward_to(seq: nn.Sequential, stop: int, inputs: torch.Tensor) -> torch.Tensor:
    """Output of ``seq[:stop]`` on ``inputs`` in eval mode (on a copy: ``seq``'s mode stays)."""
    head = copy.deepcopy(seq[:stop]).eval()
    with torch.no_grad():
        out: torch.Tensor = head(inputs)
    return out


def _hidden_output(
    seq: nn.Sequential, mlp: MLPStructure, layer: int, inputs: torch.Tensor
) -> torch.Tensor:
    """Post-activation output ``(N, width)`` of hidden layer ``layer`` (Dropout off)."""
    if not 0 <= layer < mlp.depth:
        raise ConfigError(f"layer must be a hidden layer in [0, {mlp.depth}), but got {layer=}.")
    return _forward_to(seq, mlp.linear_positions[layer] + 2, inputs)  # through the activation


def unit_importance(
    module: nn.Module, layer: int, inputs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance and mean activation of each unit of hidden layer ``layer``.

    ``score_j ** 2`` is the mean squared change of the next layer's pre-activation when unit
    ``j`` alone is removed and replaced by its mean (see :mod:`selfimprove.strategies._prune`).
    Runs in eval mode on a copy, so Dropout is off and ``module`` is left alone.

    Args:
        module: A ``build_mlp``-shaped MLP.
        layer: Hidden layer index (0-based).
        inputs: ``(N, in_features)`` training inputs.

    Returns:
        ``(scores, means)``, both ``(width,)`` float64: ``std_n(h[:, j]) * ||W_next[:, j]||_2``
        and ``mean_n(h[:, j])`` of the layer's post-activation output ``h``.

    Raises:
        StrategyError: ``module`` is not a supported MLP.
        ConfigError: ``layer`` is not a hidden layer.
    """
    mlp = parse_mlp(module)
    seq = cast(nn.Sequential, module)  # parse_mlp checked it
    h = _hidden_output(seq, mlp, layer, inputs).double()  # (N, w_l)
    means = h.mean(dim=0)  # (w_l,)
    std = h.std(dim=0, unbiased=False)  # (w_l,)
    nxt = _linear(seq, mlp.linear_positions[layer + 1])
    w_next = nxt.weight.detach().double()  # (w_{l+1}, w_l)
    scores = std * w_next.norm(dim=0)  # (w_l,)
    return scores, means


def refit_next_layer(
    module: nn.Module,
    layer: int,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    ridge: float = RIDGE,
) -> nn.Sequential:
    """A **new** MLP whose Linear after hidden layer ``layer`` is refit by least squares.

    Solves ``min_{W, b} ||h W^T + b - targets||^2 + lam ||W||^2`` in float64, where ``h`` is the
    layer's post-activation output on ``inputs`` and ``lam = ridge * mean_j ||h[:, j]||^2``.
    With ``targets`` the next pre-activation of the model *before* a unit was removed, this
    rebuilds it from the kept units as well as any linear map can: at least as well as mean
    replacement (one of the maps searched), and exactly when the removed units were linear
    combinations of kept ones (e.g. duplicates) plus a constant.

    Args:
        module: A ``build_mlp``-shaped MLP.
        layer: Hidden layer index (0-based) whose next Linear is refit.
        inputs: ``(N, in_features)`` training inputs.
        targets: ``(N, out)`` what the next Linear should output on them.
        ridge: Relative ridge penalty (keeps the solve well-posed when units are dead or
            collinear); must be > 0.

    Returns:
        A copy of ``module`` with that Linear's weight and bias replaced.

    Raises:
        StrategyError: ``module`` is not a supported MLP.
        ConfigError: Bad ``layer``, ``ridge`` or ``targets`` shape.
    """
    mlp = parse_mlp(module)
    seq = cast(nn.Sequential, module)  # parse_mlp checked it
    if not ridge > 0:
        raise ConfigError(f"ridge must be > 0, but got {ridge=}.")
    h = _hidden_output(seq, mlp, layer, inputs).double()  # (N, k)
    pos = mlp.linear_positions[layer + 1]
    nxt = _linear(seq, pos)
    if tuple(targets.shape) != (len(h), nxt.out_features):
        raise ConfigError(
            f"targets must have shape ({len(h)}, {nxt.out_features}), but got "
            f"{tuple(targets.shape)}."
        )
    k = h.shape[1]
    ones = torch.ones(len(h), 1, dtype=h.dtype, device=h.device)
    x = torch.cat([h, ones], dim=1)  # (N, k + 1): units, 1
    gram = x.T @ x  # (k + 1, k + 1)
    lam = ridge * max(float(gram.diagonal()[:k].mean()), 1e-12)
    gram[range(k), range(k)] += lam  # the intercept is not penalised
    solution = torch.linalg.solve(gram, x.T @ targets.double())  # (k + 1, out)
    out = copy.deepcopy(seq)
    new = _linear(out, pos)
    with torch.no_grad():
        new.weight.copy_(solution[:k].T.to(new.weight.dtype))  # (out, k)
        new.bias.copy_(solution[k].to(new.bias.dtype))  # (out,)
    return out


def cut_mlp(
    module: nn.Module,
    widths: Sequence[int],
    inputs: torch.Tensor,
    *,
    reconstruct: bool = True,
) -> nn.Sequential:
    """A **new** MLP with hidden ``widths``: score, remove, and repair, layer by layer.

    Hidden layers are cut first to last. Each is scored by :func:`unit_importance` on the
    model as cut so far (so later layers see the earlier cuts), keeps its highest-scoring
    units, and has the removed units' means folded into the next bias (:func:`prune_mlp`).
    With ``reconstruct``, the next Linear is then refit (:func:`refit_next_layer`) to
    reproduce what it output in the uncut ``module``, which also repairs the drift that
    earlier cuts caused.

    Args:
        module: A ``build_mlp``-shaped MLP (left alone).
        widths: Target hidden widths, each in ``[1, current width]``.
        inputs: ``(N, in_features)`` training inputs that scores and refits are computed on.
        reconstruct: Whether to refit each next Linear by least squares.

    Returns:
        The smaller MLP.

    Raises:
        StrategyError: ``module`` is not a supported MLP.
        ConfigError: ``widths`` does not fit the hidden layers.
    """
    reference = parse_mlp(module)
    ref_seq = cast(nn.Sequential, module)  # parse_mlp checked it
    if len(widths) != reference.depth or not all(
        1 <= w <= now for w, now in zip(widths, reference.widths, strict=False)
    ):
        raise ConfigError(
            f"widths must give one width in [1, now] per hidden layer of {list(reference.widths)}"
            f", but got {list(widths)}."
        )
    out = ref_seq
    for layer in range(reference.depth):
        current = parse_mlp(out).widths
        if current[layer] == widths[layer]:
            continue
        scores, means = unit_importance(out, layer, inputs)  # (w_l,), (w_l,)
        order = torch.sort(scores, descending=True, stable=True).indices
        keep = [torch.arange(w) for w in current]
        keep[layer] = order[: widths[layer]]
        unit_means: list[torch.Tensor | None] = [None] * reference.depth
        unit_means[layer] = means
        out = prune_mlp(out, keep, unit_means=unit_means)
        if reconstruct:
            # What the next Linear gave in the uncut model: (N, width of layer + 1 or classes)
            targets = _forward_to(ref_seq, reference.linear_positions[layer + 1] + 1, inputs)
            out = refit_next_layer(out, layer, inputs, targets)
    return out if out is not ref_seq else copy.deepcopy(ref_seq)
