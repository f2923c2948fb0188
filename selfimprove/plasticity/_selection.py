"""Which estimator prunes, and which grown heads stay: the two choices a cycle makes on data.

- :func:`screen_estimators`: prune the same number of heads with every estimator and keep
  gradient (Michel et al.) unless another is clearly better on probe windows;
- :func:`drop_unpaid_heads`: after learning, remove the grown heads whose removal costs no more
  than a pruned head cost.

Both return their choice with the figures that made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from selfimprove.nn.transformer.importance import ESTIMATORS, PruneStep, prune_iteratively
from selfimprove.nn.transformer.surgery import prune_heads
from selfimprove.plasticity._config import PlasticityConfig
from selfimprove.plasticity._workbench import window_losses

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["drop_unpaid_heads", "screen_estimators"]


def screen_estimators(
    model: GPT2LMHeadModel,
    n: int,
    batches: list[torch.Tensor],
    probe: torch.Tensor,
    seed: int,
    config: PlasticityConfig,
) -> tuple[str, GPT2LMHeadModel, dict[int, list[int]], list[PruneStep], dict[str, float]]:
    """Prune ``n`` heads with every estimator and pick one on the probe windows.

    The first of :data:`ESTIMATORS` (gradient, Michel et al.) is kept unless another
    estimator's pruned model has a lower probe loss by more than two standard errors of the
    per-window difference (paired, same windows): a screen on a few windows must not trade
    the best-founded estimator for noise. Among those that clear the bar, the lowest loss
    wins.

    Args:
        model: The model to prune (left alone).
        n: Heads to remove.
        batches: Training batches the estimators score heads on.
        probe: Training windows the pruned models are compared on, ``(N, T + 1)``.
        seed: Seeds the random estimator.
        config: Step fraction and heads every layer keeps.

    Returns:
        The estimator, its pruned model, the removed heads, its steps, and every
        estimator's mean probe loss (nats).
    """
    runs: dict[str, tuple[GPT2LMHeadModel, dict[int, list[int]], list[PruneStep]]] = {}
    per_window: dict[str, torch.Tensor] = {}
    for name in ESTIMATORS:
        runs[name] = prune_iteratively(
            model,
            n,
            name,
            batches,
            step_fraction=config.prune_step_fraction,
            min_heads=config.min_heads_per_layer,
            seed=seed,
        )
        per_window[name] = window_losses(runs[name][0], probe)
    default = ESTIMATORS[0]
    best = default
    for name in ESTIMATORS[1:]:
        gain = per_window[default] - per_window[name]  # (N,) > 0: name is better
        stderr = float(gain.std()) / len(gain) ** 0.5 if len(gain) > 1 else 0.0
        clears = float(gain.mean()) > 2.0 * stderr
        if clears and float(per_window[name].mean()) < float(per_window[best].mean()):
            best = name
    losses = {k: float(v.mean()) for k, v in per_window.items()}
    return (best, *runs[best], losses)


def drop_unpaid_heads(
    model: GPT2LMHeadModel,
    new_heads: dict[int, list[int]],
    probe: torch.Tensor,
    head_cost: float,
) -> tuple[GPT2LMHeadModel, dict[int, list[int]], str]:
    """Remove the grown heads that do not pay.

    A grown head pays if removing it raises the probe loss by more than ``head_cost`` (the
    mean probe loss a pruned head cost this cycle, at least 0): otherwise the cycle would
    rather have kept the pruned head than grown this one. Heads are tested alone, then the
    unpaid ones together (kept if removing them together costs more than their share).

    Args:
        model: The learned candidate (left alone).
        new_heads: Positions of the grown heads per layer.
        probe: Windows the losses are measured on, ``(N, T + 1)``.
        head_cost: Mean probe loss (nats) one pruned head cost this cycle.

    Returns:
        The model (``model`` itself if none goes), the removed positions, the reason.
    """
    with_all = float(window_losses(model, probe).mean())
    bar = max(0.0, head_cost)
    unpaid: dict[int, list[int]] = {}
    for layer, positions in sorted(new_heads.items()):
        for pos in positions:
            alone = prune_heads(model, {layer: [pos]})
            if float(window_losses(alone, probe).mean()) - with_all <= bar:
                unpaid.setdefault(layer, []).append(pos)
    if not unpaid:
        return model, {}, f"every grown head pays more than {bar:.2e} nats (a pruned head)"
    trimmed = prune_heads(model, unpaid)
    without = float(window_losses(trimmed, probe).mean())
    n = sum(len(v) for v in unpaid.values())
    if without - with_all > bar * n:
        return (
            model,
            {},
            f"{n} grown heads pay together ({without - with_all:.2e} nats > {n} x {bar:.2e}): kept",
        )
    return (
        trimmed,
        unpaid,
        f"{n} grown heads did not pay (probe loss {with_all:.4f} with them, {without:.4f} "
        f"without; a pruned head cost {bar:.2e}): removed",
    )
