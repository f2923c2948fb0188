"""Where to grow heads: three placements, each a pure, seeded plan.

- ``importance``: capacity is missing where the remaining heads work hardest. A layer's demand
  is the mean *raw* (not per-layer normalised) gradient importance of its heads (Michel et
  al.'s ``E|dL/d xi_h|``, measured on the pruned model): a layer whose heads each change the
  loss a lot when gated is short of heads. Heads go one at a time to the layer of highest
  ``demand / (1 + added)``, so a layer's share shrinks as it receives heads.
- ``uniform``: round robin, the layers with the fewest heads first.
- ``random``: seeded random layers.

Every plan respects ``max_heads`` per layer (the model's original head count by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from selfimprove.errors import ConfigError
from selfimprove.seeding import numpy_rng

__all__ = ["GROWTH_STRATEGIES", "plan_growth"]

GROWTH_STRATEGIES = ("importance", "uniform", "random")


def plan_growth(
    n: int,
    heads: Sequence[int],
    *,
    strategy: str,
    max_heads: Sequence[int],
    raw_importance: Sequence[torch.Tensor] | None = None,
    seed: int = 0,
) -> dict[int, int]:
    """Layer -> number of heads to add.

    Args:
        n: Heads to add in total (fewer if the layers are full).
        heads: Current heads per layer.
        strategy: One of :data:`GROWTH_STRATEGIES`.
        max_heads: Cap per layer.
        raw_importance: Per-layer raw gradient importance (needed by ``importance``).
        seed: Seeds ``random``.

    Returns:
        Only layers that receive heads.

    Raises:
        ConfigError: Unknown strategy, negative ``n``, or missing importance.
    """
    if strategy not in GROWTH_STRATEGIES:
        raise ConfigError(f"unknown growth strategy {strategy!r}; use one of {GROWTH_STRATEGIES}.")
    if n < 0:
        raise ConfigError(f"cannot grow {n} heads; use a count >= 0.")
    if len(max_heads) != len(heads):
        raise ConfigError(f"max_heads needs {len(heads)} entries, but got {len(max_heads)}.")
    room = [max(0, m - h) for h, m in zip(heads, max_heads, strict=True)]
    n = min(n, sum(room))
    added = [0] * len(heads)
    if n == 0:
        return {}
    if strategy == "importance":
        if raw_importance is None or len(raw_importance) != len(heads):
            raise ConfigError("the importance placement needs the raw importance of every layer.")
        demand = [float(s.mean()) for s in raw_importance]
        for _ in range(n):
            layer = max(
                (i for i in range(len(heads)) if added[i] < room[i]),
                key=lambda i: (demand[i] / (1 + added[i]), -i),
            )
            added[layer] += 1
    elif strategy == "uniform":
        for _ in range(n):
            layer = min(
                (i for i in range(len(heads)) if added[i] < room[i]),
                key=lambda i: (heads[i] + added[i], i),
            )
            added[layer] += 1
    else:
        rng = numpy_rng("plan_growth", seed)
        for _ in range(n):
            open_layers = [i for i in range(len(heads)) if added[i] < room[i]]
            added[int(open_layers[int(rng.integers(len(open_layers)))])] += 1
    return {i: a for i, a in enumerate(added) if a}
