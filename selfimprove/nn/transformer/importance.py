"""Head importance, five estimators side by side, and importance-driven pruning plans.

All estimators return one ``(h_l,)`` tensor per layer (higher = more important), measured on
**training** windows only (validation decides, so it never steers which heads go). A "head" is
a family's unit (:mod:`.family`): a GPT-2 head, or a Llama key/value group whose query heads'
scores are combined as noted:

- ``gradient`` (Michel, Levy & Neubig 2019): ``I_h = E_x |dL(x)/d xi_h|`` with a gate ``xi_h = 1``
  on every head (:class:`HeadGates` with one gate per sequence, so one backward pass gives every
  sequence's own gradient); the first-order estimate of the loss change when the head is removed.
- ``entropy``: ``1 - mean normalised attention entropy``: a head that spreads its attention
  evenly over the past (entropy ``log(t+1)`` at position ``t``) scores 0, a sharply focused one
  near 1 (a group: the mean over its query heads). Attention is recomputed from the layer's
  input (``softmax(q k^T * scale)``, causal, after Llama's rotary embedding), so it does not
  depend on the attention kernel transformers picks.
- ``activation``: mean L2 norm of the unit's contribution to the residual stream,
  ``||o_h W_proj[h]||`` per token (its output as the model actually adds it).
- ``magnitude``: ``||W_q,h|| + ||W_k,h|| + ||W_v,h|| + ||W_proj,h||`` (Frobenius norms of the
  unit's whole slices).
- ``random``: seeded uniform scores: the floor every estimator must beat.

Scores are normalised per layer to unit L2 norm (Michel et al.), then ranked globally.
:func:`prune_iteratively` removes heads in steps of at most ``step_fraction`` of the heads,
re-scoring the smaller model after each step, as Michel et al. do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from selfimprove.errors import ConfigError
from selfimprove.nn.transformer.family import AttentionFamily, family_of
from selfimprove.nn.transformer.gates import HeadGates, heads_per_layer
from selfimprove.nn.transformer.measure import sequence_nll
from selfimprove.nn.transformer.surgery import prune_heads
from selfimprove.seeding import derive_seed

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = [
    "ESTIMATORS",
    "PruneStep",
    "head_importance",
    "normalise_per_layer",
    "prune_iteratively",
    "select_heads",
]

ESTIMATORS = ("gradient", "entropy", "activation", "magnitude", "random")


def normalise_per_layer(scores: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each layer's scores divided by their L2 norm (a zero layer stays zero)."""
    out = []
    for s in scores:
        norm = float(s.norm())
        out.append(s / norm if norm > 0 else s.clone())
    return out


def _gradient(model: GPT2LMHeadModel, batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    counts = heads_per_layer(model)
    acc = [torch.zeros(h, dtype=torch.float64) for h in counts]
    n = 0
    for windows in batches:  # (B, T+1)
        b = windows.shape[0]
        gates = [torch.ones(b, h, requires_grad=True) for h in counts]  # (B, h) per layer
        with torch.enable_grad(), HeadGates(model, gates):
            loss = sequence_nll(model, windows).sum()  # sum of per-sequence mean losses
            grads = torch.autograd.grad(loss, gates)
        for layer, g in enumerate(grads):
            acc[layer] += g.detach().abs().double().sum(dim=0).cpu()
        n += b
    return [(a / n).float() for a in acc]


def _captured(
    model: GPT2LMHeadModel,
    batches: Sequence[torch.Tensor],
    per_layer: Callable[[AttentionFamily, Any, torch.Tensor], torch.Tensor],
    *,
    at_projection: bool,
) -> list[torch.Tensor]:
    """Run the batches with a hook on every layer that hands ``(family, attn, x)`` to
    ``per_layer``, which returns a ``(h,)`` sum over the batch; returns the means.

    ``x`` is the attention scores ``(B, U, r, T, T)`` (:meth:`AttentionFamily.attention_scores`,
    from the attention module's input) or, with ``at_projection``, the output projection's input
    ``(B, T, U * r * d)``.
    """
    family = family_of(model)
    attns = family.attention_modules(model)
    acc = [torch.zeros(family.units(a), dtype=torch.float64) for a in attns]
    handles: list[Any] = []

    def scores_hook(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]  # (B, T, E)
            scores = family.attention_scores(module, hidden.detach(), kwargs)
            acc[layer] += per_layer(family, module, scores).double().cpu()

        return hook

    def projection_hook(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: tuple[torch.Tensor, ...]) -> None:
            acc[layer] += per_layer(family, attns[layer], args[0].detach()).double().cpu()

        return hook

    try:
        for layer, attn in enumerate(attns):
            if at_projection:
                proj = family.output_projection(attn)
                handles.append(proj.register_forward_pre_hook(projection_hook(layer)))
            else:
                handles.append(attn.register_forward_pre_hook(scores_hook(layer), with_kwargs=True))
        n = 0
        with torch.no_grad():
            for windows in batches:
                sequence_nll(model, windows)
                n += windows.shape[0]
    finally:
        for h in handles:
            h.remove()
    return [(a / n).float() for a in acc]


def _entropy_one(family: AttentionFamily, attn: Any, scores: torch.Tensor) -> torch.Tensor:
    t = scores.shape[-1]  # scores: (B, U, r, T, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    p = scores.softmax(dim=-1)
    ent = -(p * p.clamp_min(1e-12).log()).sum(dim=-1)  # (B, U, r, T)
    max_ent = torch.log(torch.arange(1, t + 1, dtype=torch.float32, device=scores.device))
    norm = ent[..., 1:] / max_ent[1:]  # log(t+1) at position t; position 0 is skipped
    return (1.0 - norm.mean(dim=-1).mean(dim=-1)).sum(dim=0)  # (U,): a group's heads averaged


def _activation_one(family: AttentionFamily, attn: Any, proj_in: torch.Tensor) -> torch.Tensor:
    w = family.output_weight(attn).float()  # (U, r*d, E)
    h = w.shape[0]
    b, t, _ = proj_in.shape
    o = proj_in.float().view(b, t, h, w.shape[1])  # (B, T, U, r*d)
    contrib = torch.einsum("bthd,hde->bthe", o, w)  # (B, T, U, E)
    return contrib.norm(dim=-1).mean(dim=1).sum(dim=0)  # (U,)


def _magnitude(model: GPT2LMHeadModel) -> list[torch.Tensor]:
    family = family_of(model)
    return [family.magnitude(attn) for attn in family.attention_modules(model)]


def head_importance(
    model: GPT2LMHeadModel,
    batches: Sequence[torch.Tensor],
    method: str = "gradient",
    *,
    seed: int = 0,
    normalise: bool = True,
) -> list[torch.Tensor]:
    """Importance of every head (unit; a key/value group for Llama).

    Args:
        model: A GPT-2 or Llama model (left unchanged; it runs in eval mode, its mode is restored).
        batches: Training windows, each ``(B, T + 1)``.
        method: One of :data:`ESTIMATORS`.
        seed: Seeds ``random``.
        normalise: Divide each layer's scores by their L2 norm.

    Returns:
        One ``(h_l,)`` float tensor per layer; higher means more important.

    Raises:
        ConfigError: Unknown method or no batches.
    """
    if method not in ESTIMATORS:
        raise ConfigError(f"unknown importance estimator {method!r}; use one of {ESTIMATORS}.")
    if method in ("gradient", "entropy", "activation") and not batches:
        raise ConfigError(f"the {method} estimator needs at least one batch of windows.")
    was_training = model.training
    model.eval()
    try:
        if method == "gradient":
            scores = _gradient(model, batches)
        elif method == "entropy":
            scores = _captured(model, batches, _entropy_one, at_projection=False)
        elif method == "activation":
            scores = _captured(model, batches, _activation_one, at_projection=True)
        elif method == "magnitude":
            scores = _magnitude(model)
        else:
            gen = torch.Generator().manual_seed(derive_seed("random_importance", seed) % 2**63)
            scores = [torch.rand(h, generator=gen) for h in heads_per_layer(model)]
    finally:
        model.train(was_training)
    return normalise_per_layer(scores) if normalise else scores


def select_heads(
    importance: Sequence[torch.Tensor], n: int, *, min_heads: int = 1
) -> dict[int, list[int]]:
    """The ``n`` least important heads, ranked globally, never leaving a layer below
    ``min_heads``.

    Args:
        importance: One ``(h_l,)`` tensor per layer.
        n: Heads to pick.
        min_heads: Heads each layer keeps at least.

    Returns:
        Layer -> head positions (sorted); ties broken by (layer, head) order.

    Raises:
        ConfigError: ``n`` is negative or more heads than can go.
    """
    counts = [len(s) for s in importance]
    removable = sum(max(0, h - min_heads) for h in counts)
    if n < 0 or n > removable:
        raise ConfigError(
            f"cannot remove {n} heads: between 0 and {removable} can go while every layer "
            f"keeps {min_heads} (heads per layer {counts})."
        )
    ranked = sorted(
        (float(s), layer, head)
        for layer, scores in enumerate(importance)
        for head, s in enumerate(scores)
    )
    left = list(counts)
    chosen: dict[int, list[int]] = {}
    picked = 0
    for _score, layer, head in ranked:
        if picked >= n:
            break
        if left[layer] <= min_heads:
            continue
        chosen.setdefault(layer, []).append(head)
        left[layer] -= 1
        picked += 1
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


@dataclass(frozen=True)
class PruneStep:
    """One step of iterative pruning.

    Attributes:
        removed: Layer -> positions removed, in the *input* model's numbering.
        importance: The scores this step ranked by (layer lists, in the step's model numbering).
    """

    removed: dict[int, list[int]]
    importance: list[list[float]]


def prune_iteratively(
    model: GPT2LMHeadModel,
    n_remove: int,
    method: str,
    batches: Sequence[torch.Tensor],
    *,
    step_fraction: float = 0.1,
    min_heads: int = 1,
    seed: int = 0,
) -> tuple[GPT2LMHeadModel, dict[int, list[int]], list[PruneStep]]:
    """Remove ``n_remove`` heads in steps, re-scoring after each (a new model is returned).

    Args:
        model: A GPT-2 or Llama model (left alone).
        n_remove: Heads (units) to remove in total.
        method: Importance estimator (see :data:`ESTIMATORS`).
        batches: Training windows for the estimator.
        step_fraction: Largest share of the input's heads removed per step (at least one head).
        min_heads: Heads each layer keeps at least.
        seed: Seeds ``random`` (each step draws anew).

    Returns:
        The pruned model; layer -> removed positions in ``model``'s numbering; the steps.

    Raises:
        ConfigError: Bad counts (see :func:`select_heads`) or a bad ``step_fraction``.
    """
    if not 0 < step_fraction <= 1:
        raise ConfigError(f"step_fraction must be in (0, 1], but got {step_fraction=}.")
    counts = heads_per_layer(model)
    step_size = max(1, int(step_fraction * sum(counts)))
    alive = [list(range(h)) for h in counts]  # current position -> input position
    current = model
    removed: dict[int, list[int]] = {}
    steps: list[PruneStep] = []
    left = n_remove
    i = 0
    while left > 0:
        k = min(step_size, left)
        scores = head_importance(current, batches, method, seed=derive_seed(seed, "step", i))
        pick = select_heads(scores, k, min_heads=min_heads)
        in_input = {layer: [alive[layer][p] for p in pos] for layer, pos in pick.items()}
        steps.append(PruneStep(in_input, [s.tolist() for s in scores]))
        for layer, pos in pick.items():
            removed.setdefault(layer, []).extend(alive[layer][p] for p in pos)
            alive[layer] = [a for j, a in enumerate(alive[layer]) if j not in set(pos)]
        current = prune_heads(current, pick)
        left -= k
        i += 1
    if current is model:  # nothing removed: still a new module, as promised
        current = copy.deepcopy(model)
    return current, {k: sorted(v) for k, v in sorted(removed.items())}, steps
