"""Strategy adaptation and the memory of transformations: decisions as data.

Ratings (:class:`StrategyRatings`). Each pruning estimator and each growth placement has a
rating: the mean reward of its real outcomes, started from one pseudo-observation of a prior.
The pruning priors follow the reference figures in the project's BENCHMARKS (one-shot, 40 %
of a tiny GPT-2's heads removed: gradient +8.9 % perplexity, magnitude +34 %, random +50 %);
the others sit between. The choice is deterministic UCB1: ``mean + c * sqrt(ln N / n)``, ties
broken by the listed order, and it returns its reason, so every choice can be explained.

Rewards (:func:`cycle_reward`): a rejected cycle earns -1; an accepted one earns the share of
heads it removed (net of growth), weighted by how much of the perplexity tolerance it left
unused (``0.5 + 0.5 * margin``, so staying at the start's perplexity counts double a cycle that
used the whole tolerance).

Levels: the cycle's level comes from the search for the largest removal within the tolerance
(:mod:`selfimprove.plasticity._search`). :func:`adapt_levels`, the older rule, is kept for
callers of its own: after an accepted cycle the pruning level grows in proportion to
the tolerance it left unused, ``level * (1 + margin)`` (x2 when perplexity did not rise at all,
unchanged when the whole tolerance was used; at most :data:`MAX_PRUNING_LEVEL`), and with more
than half the tolerance left the growth ratio shrinks by x0.8. A rejected cycle halves the
pruning level, so the next cycle retries smaller; it leaves the growth ratio alone (new heads
start silent and cannot repair in a few steps what pruning cost; they only cost the heads they
add back). Pure functions: they return the new values and a label of the change.

Growth (:func:`adapt_growth`): grown heads must earn their keep. After learning, every grown head
is tested on probe windows and removed again unless it pays more than a pruned head cost
(:func:`selfimprove.plasticity._selection.drop_unpaid_heads`); the next cycle grows in proportion
to the share that paid (``ratio * kept / grown``), so a cycle in which no grown head paid turns
growth off for the rest of the run.

Memory (:class:`TransformationMemory`): every cycle's transformation (state before, strategy,
level, growth, which heads went and where heads grew, outcome) is kept in a JSON file in the
home folder, across runs, keyed by the starting model (its name and the sha256 of its weights).
When the current state (heads per layer as fractions of the model's original count, and
perplexity relative to the start) is within :data:`SIMILAR_HEADS` and
:data:`SIMILAR_PERPLEXITY` of a remembered accepted transformation of the same model, its
strategy, level and growth are reused; a remembered rejection from a similar state caps the
level below the one that failed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfimprove.checkpoints import atomic_write_json
from selfimprove.errors import ConfigError
from selfimprove.store import clean_json

__all__ = [
    "GROWTH_PRIORS",
    "MAX_PRUNING_LEVEL",
    "PRUNING_PRIORS",
    "SIMILAR_HEADS",
    "SIMILAR_PERPLEXITY",
    "StrategyRatings",
    "Transformation",
    "TransformationMemory",
    "adapt_growth",
    "adapt_levels",
    "cycle_reward",
]

#: Prior mean reward of each pruning estimator (one pseudo-observation each).
PRUNING_PRIORS = {
    "gradient": 0.3,
    "activation": 0.2,
    "magnitude": 0.15,
    "entropy": 0.1,
    "random": 0.0,
}
#: Prior mean reward of each growth placement.
GROWTH_PRIORS = {"importance": 0.2, "uniform": 0.1, "random": 0.0}
#: Largest share of the current heads one cycle may prune.
MAX_PRUNING_LEVEL = 0.5
#: Largest mean absolute difference of per-layer head fractions for two states to be similar.
SIMILAR_HEADS = 0.05
#: Largest difference of relative perplexity (ppl / start ppl) for two states to be similar.
SIMILAR_PERPLEXITY = 0.05
#: Exploration weight of UCB1.
EXPLORATION = 0.2


class StrategyRatings:
    """Ratings of a family of strategies, updated from real outcomes.

    Args:
        priors: Strategy name -> prior mean reward (one pseudo-observation), in preference order.
        exploration: UCB1 weight ``c``.

    Raises:
        ConfigError: No strategies.
    """

    def __init__(self, priors: Mapping[str, float], *, exploration: float = EXPLORATION) -> None:
        if not priors:
            raise ConfigError("StrategyRatings needs at least one strategy.")
        self.exploration = exploration
        self.names = list(priors)
        self.priors = dict(priors)
        self.rewards: dict[str, list[float]] = {n: [] for n in self.names}

    def mean(self, name: str) -> float:
        """Mean reward with the prior as one observation."""
        r = self.rewards[name]
        return (self.priors[name] + sum(r)) / (1 + len(r))

    def choose(self) -> tuple[str, str]:
        """The strategy to use next, and why (deterministic UCB1)."""
        total = sum(1 + len(r) for r in self.rewards.values())
        best, best_value = self.names[0], -math.inf
        for name in self.names:
            n = 1 + len(self.rewards[name])
            value = self.mean(name) + self.exploration * math.sqrt(math.log(total) / n)
            if value > best_value + 1e-12:
                best, best_value = name, value
        n_real = len(self.rewards[best])
        return best, (
            f"UCB1: mean reward {self.mean(best):+.3f} over {n_real} outcome(s) + prior, "
            f"bound {best_value:.3f}"
        )

    def update(self, name: str, reward: float) -> None:
        """Record one real outcome.

        Raises:
            ConfigError: Unknown strategy.
        """
        if name not in self.rewards:
            raise ConfigError(f"unknown strategy {name!r}; known: {self.names}.")
        self.rewards[name].append(float(reward))

    def to_dict(self) -> dict[str, Any]:
        """Per strategy: prior, outcomes, mean reward."""
        return {
            n: {"prior": self.priors[n], "rewards": list(self.rewards[n]), "mean": self.mean(n)}
            for n in self.names
        }


def cycle_reward(
    *,
    accepted: bool,
    heads_before: int,
    heads_after: int,
    perplexity_start: float,
    perplexity_after: float,
    tolerance: float,
) -> float:
    """The reward of one cycle (see the module docstring).

    Args:
        accepted: Whether the cycle was kept.
        heads_before: Heads at the start of the cycle.
        heads_after: Heads at its end.
        perplexity_start: Perplexity of the run's starting model.
        perplexity_after: Perplexity after the cycle.
        tolerance: Allowed relative perplexity increase.

    Returns:
        -1 for a rejected cycle, else a value in [0, 1] for a net reduction.
    """
    if not accepted:
        return -1.0
    removed = (heads_before - heads_after) / max(heads_before, 1)
    increase = perplexity_after / perplexity_start - 1.0
    margin = 1.0 - min(1.0, max(0.0, increase) / tolerance) if tolerance > 0 else 0.0
    return removed * (0.5 + 0.5 * margin)


def adapt_levels(
    pruning_level: float, growth_ratio: float, *, accepted: bool, margin: float
) -> tuple[float, float, str]:
    """New pruning level and growth ratio after a cycle, with a label of the change.

    Args:
        pruning_level: Share of the current heads pruned this cycle.
        growth_ratio: Heads grown per head pruned this cycle.
        accepted: Whether the cycle was kept.
        margin: Share of the perplexity tolerance left unused (1 = none used).

    Returns:
        ``(pruning_level, growth_ratio, label)``.
    """
    if not accepted:
        return pruning_level * 0.5, growth_ratio, "rejected: level * 0.5, retry smaller"
    margin = min(1.0, max(0.0, margin))
    level = min(MAX_PRUNING_LEVEL, pruning_level * (1.0 + margin))
    if margin > 0.5:
        return (
            level,
            growth_ratio * 0.8,
            f"accepted, {margin:.0%} of the tolerance left: level * {1 + margin:.2f}, growth * 0.8",
        )
    return (
        level,
        growth_ratio,
        f"accepted, {margin:.0%} of the tolerance left: level * {1 + margin:.2f}",
    )


def adapt_growth(growth_ratio: float, *, grown: int, kept: int) -> tuple[float, str]:
    """The next cycle's growth ratio from the evidence of this one's grown heads.

    Args:
        growth_ratio: Heads grown per head pruned this cycle.
        grown: Heads grown this cycle.
        kept: Grown heads that paid (kept after learning).

    Returns:
        ``(growth_ratio, label)``: unchanged when nothing was grown or every grown head paid,
        else scaled by the share that paid (0 when none did: growth stops).
    """
    if grown <= 0 or growth_ratio <= 0:
        return growth_ratio, "growth: nothing grown, ratio unchanged"
    kept = min(max(0, kept), grown)
    if kept == 0:
        return 0.0, f"growth: none of the {grown} grown heads paid, growth off"
    if kept == grown:
        return growth_ratio, f"growth: all {grown} grown heads paid, ratio unchanged"
    share = kept / grown
    return (
        growth_ratio * share,
        f"growth: {kept} of {grown} grown heads paid, ratio * {share:.2f}",
    )


@dataclass(frozen=True)
class Transformation:
    """One remembered cycle.

    Attributes:
        model: The starting model: ``name@sha256-prefix`` (memories are kept per model).
        run: Run folder name.
        cycle: Cycle number in that run.
        head_fractions: Heads per layer / the original count per layer, before the cycle.
        relative_perplexity: Perplexity before the cycle / the run's starting perplexity.
        pruning_strategy: Estimator used.
        pruning_level: Share of heads pruned.
        growth_strategy: Placement used.
        growth_ratio: Heads grown per head pruned.
        pruned: ``[layer, slot]`` of every removed head.
        grown: ``[layer, slot]`` of every grown head.
        accepted: Whether the cycle was kept.
        reward: Its reward.
    """

    model: str
    run: str
    cycle: int
    head_fractions: list[float]
    relative_perplexity: float
    pruning_strategy: str
    pruning_level: float
    growth_strategy: str
    growth_ratio: float
    pruned: list[list[int]] = field(default_factory=list)
    grown: list[list[int]] = field(default_factory=list)
    accepted: bool = False
    reward: float = 0.0

    def distance(self, head_fractions: Sequence[float], relative_perplexity: float) -> float:
        """Mean absolute difference of head fractions (``inf`` for another layer count)."""
        if len(head_fractions) != len(self.head_fractions):
            return math.inf
        diff = [abs(a - b) for a, b in zip(head_fractions, self.head_fractions, strict=True)]
        return sum(diff) / len(diff)

    def similar(self, head_fractions: Sequence[float], relative_perplexity: float) -> bool:
        """Whether a state is close enough to this one's starting state."""
        return (
            self.distance(head_fractions, relative_perplexity) <= SIMILAR_HEADS
            and abs(relative_perplexity - self.relative_perplexity) <= SIMILAR_PERPLEXITY
        )


class TransformationMemory:
    """Transformations of past cycles, persisted as JSON.

    Args:
        path: The JSON file (``None``: in memory only).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.items: list[Transformation] = []
        if path is not None and path.exists():
            try:
                raw = json.loads(path.read_text())
                self.items = [Transformation(**t) for t in raw.get("transformations", [])]
            except (OSError, json.JSONDecodeError, TypeError) as exc:
                raise ConfigError(
                    f"the plasticity memory {path} is unreadable ({exc}); move it away to start "
                    "a fresh memory."
                ) from None

    def add(self, item: Transformation) -> None:
        """Remember one cycle (and save, when backed by a file)."""
        self.items.append(item)
        self.save()

    def save(self) -> None:
        """Write the file atomically (no-op without a path)."""
        if self.path is not None:
            atomic_write_json(
                self.path,
                clean_json(
                    {
                        "format": "selfimprove-plasticity-memory/1",
                        "transformations": [asdict(t) for t in self.items],
                    }
                ),
            )

    def recall(
        self, model: str, head_fractions: Sequence[float], relative_perplexity: float
    ) -> Transformation | None:
        """The best accepted transformation of ``model`` from a similar state, if any."""
        hits = [
            t
            for t in self.items
            if t.model == model and t.accepted and t.similar(head_fractions, relative_perplexity)
        ]
        return max(hits, key=lambda t: (t.reward, -t.cycle)) if hits else None

    def failures(
        self, model: str, head_fractions: Sequence[float], relative_perplexity: float
    ) -> list[Transformation]:
        """Rejected transformations of ``model`` from a similar state."""
        return [
            t
            for t in self.items
            if t.model == model
            and not t.accepted
            and t.similar(head_fractions, relative_perplexity)
        ]
