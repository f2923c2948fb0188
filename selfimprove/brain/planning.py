"""Planning: which model to improve, how, and how urgently. Pure functions, no side effects.

Weakness → task, by seed 000's rules (thresholds configurable in :class:`TaskRules`),
direction-aware:

- a classifier below ``training_below`` accuracy (0.75) → **training**;
- a classifier in [``training_below``, ``architecture_below``) (0.75–0.85) → **architecture**;
- any other primary objective short of its target → **training**, or **architecture** when
  its relative gap exceeds ``architecture_gap`` (1.0: the error is more than double the
  target, so capacity rather than training is the likely limit);
- a training task becomes an **architecture** task once training has stalled: the model's last
  ``stalled_after`` (2) training experiments since its last promotion all failed to be
  promoted, so more of the same training is unlikely to pay (measured: with the seed's rules
  alone a digits classifier at 0.95 accuracy short of its target got training and nothing but
  training, never leaving its 16-unit start however long it ran);
- batch-1 latency above ``latency_above_ms`` (200 ms) → **optimisation** (targets latency);
- a stronger incumbent of the same task exists → **distillation**.

Priority = severity × impact × hormone multiplier × genetic-trigger boost × expected gain ×
fair share.
Severity is the relative gap to the target (capped at 1); impact follows seed 002's levels
(gap > 50 %: 0.9, > 30 %: 0.7, > 20 %: 0.5, else 0.3); the expected-gain factor is
``1 + 10 × max(0, bandit mean reward)`` so that a strategy that has paid moves up, and an
unknown one is not zeroed out; the fair-share factor is ``1 + 0.5 × w``, with ``w`` the cycles
since the model's last experiment (capped at 10, and 10 for a model never tried), so that
models with smaller gaps still get their turn.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.objectives import Direction, Objective

__all__ = [
    "KINDS",
    "KIND_WEAKNESS_TYPE",
    "SEVERITY_WEIGHT",
    "ModelImprovementTask",
    "Observation",
    "Severity",
    "TaskRules",
    "Weakness",
    "WeaknessType",
    "distillation_weakness",
    "find_weaknesses",
    "severity_for_gap",
    "severity_level",
    "strongest_by_task",
]

KINDS = ("training", "optimisation", "architecture", "distillation")


@dataclass(frozen=True)
class TaskRules:
    """Seed 000's thresholds, and which strategies serve each kind of task.

    Attributes:
        training_below: Accuracy under which a classifier gets a training task.
        architecture_below: Accuracy under which (and above ``training_below``) a classifier
            gets an architecture task.
        latency_above_ms: Batch-1 latency above which a model gets an optimisation task.
        architecture_gap: Relative gap to target above which a non-accuracy objective gets an
            architecture task instead of a training one.
        stalled_after: Training experiments in a row without a promotion after which a
            training weakness is served by an architecture task (``0``: never escalate).
        strategies: Kind → strategies the bandit chooses among (unknown names are ignored).
            Architecture is served by ``evolve`` (a search of fresh networks) and ``grow``
            (function-preserving growth of the trained incumbent); ``tune`` searches training
            hyperparameters and keeps the architecture, so it is a training strategy
            (measured: with ``tune`` among the architecture arms the bandit kept picking it
            after it had once paid, and the digits model never left its 16-unit start). A
            model that neither strategy can serve (no search space, not growable) gets its
            architecture weakness served by the training strategies.
    """

    training_below: float = 0.75
    architecture_below: float = 0.85
    latency_above_ms: float = 200.0
    architecture_gap: float = 1.0
    stalled_after: int = 2
    strategies: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "training": ("train", "retrain", "tune"),
            "architecture": ("evolve", "grow"),
            "optimisation": ("quantize", "prune", "distill"),
            "distillation": ("distill",),
        }
    )

    def __post_init__(self) -> None:
        if not 0 < self.training_below <= self.architecture_below <= 1:
            raise ConfigError(
                "need 0 < training_below <= architecture_below <= 1, but got "
                f"{self.training_below=}, {self.architecture_below=}."
            )
        if self.stalled_after < 0:
            raise ConfigError(f"stalled_after must be >= 0, but got {self.stalled_after=}.")
        if self.latency_above_ms <= 0:
            raise ConfigError(f"latency_above_ms must be > 0, but got {self.latency_above_ms=}.")
        unknown = set(self.strategies) - set(KINDS)
        if unknown:
            raise ConfigError(f"unknown task kinds {sorted(unknown)}; kinds are {KINDS}.")


@dataclass(frozen=True)
class Observation:
    """What was measured about one incumbent this cycle."""

    model: str
    task: str
    family: str
    primary: Objective
    value: float  # validation value of the primary objective
    latency_ms: float
    version: int
    #: Training experiments in a row, since the model's last promotion, that were not promoted.
    training_stalled: int = 0


class WeaknessType(str, enum.Enum):
    """What kind of shortfall a weakness is (seed 002's types; the engine stores these)."""

    CAPABILITY_GAP = "capability_gap"  # performance below target
    RELIABILITY = "reliability"  # error rates, failures
    EFFICIENCY = "efficiency"  # resource usage, speed
    OUTPUT_QUALITY = "output_quality"  # quality of what is produced


class Severity(str, enum.Enum):
    """Seed 002's severity levels of a relative gap to the target (see :func:`severity_for_gap`)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def default_impact(self) -> float:
        """The seed's impact for this level."""
        return {"critical": 0.9, "high": 0.7, "medium": 0.5, "low": 0.3}[self.value]


#: Weight of each severity in a weakness's priority (priority = weight × impact).
SEVERITY_WEIGHT = {"critical": 1.0, "high": 0.75, "medium": 0.5, "low": 0.25}

#: The weakness type each kind of task serves: a model short of its quality target (training,
#: architecture, distillation) has a capability gap, a slow one an efficiency weakness.
KIND_WEAKNESS_TYPE: Mapping[str, WeaknessType] = {
    "training": WeaknessType.CAPABILITY_GAP,
    "architecture": WeaknessType.CAPABILITY_GAP,
    "distillation": WeaknessType.CAPABILITY_GAP,
    "optimisation": WeaknessType.EFFICIENCY,
}


def severity_for_gap(gap: float) -> Severity:
    """Seed 002's level for a relative gap to the target (> 0.5, > 0.3, > 0.2, else low).

    The one rule for the planner's weaknesses and the engine's stored ones.
    """
    if gap > 0.5:
        return Severity.CRITICAL
    if gap > 0.3:
        return Severity.HIGH
    if gap > 0.2:
        return Severity.MEDIUM
    return Severity.LOW


@dataclass(frozen=True)
class Weakness:
    """A shortfall that calls for a kind of task.

    The same concept as the engine's stored weakness record (its persisted form): ``gap`` is
    the direction-aware relative gap of :meth:`~selfimprove.objectives.Objective.gap`, and
    :attr:`type`, :attr:`severity` and :attr:`impact` are read in the one vocabulary above.
    """

    model: str
    kind: str
    objective: str
    gap: float
    reason: str
    teacher: str | None = None

    @property
    def type(self) -> WeaknessType:
        """The weakness type its kind of task serves (see :data:`KIND_WEAKNESS_TYPE`)."""
        return KIND_WEAKNESS_TYPE[self.kind]

    @property
    def severity(self) -> Severity:
        """Seed 002's level of its gap."""
        return severity_for_gap(self.gap)

    @property
    def impact(self) -> float:
        """Seed 002's impact of its level."""
        return self.severity.default_impact


@dataclass(frozen=True)
class ModelImprovementTask:
    """A planned experiment (seed 000's name).

    Attributes:
        model_id: The model's name.
        kind: ``training``, ``optimisation``, ``architecture`` or ``distillation``.
        strategy: The strategy chosen for it.
        objective: The objective it targets.
        priority: severity × impact × hormone × trigger boost × expected gain (or the user's).
        reason: Why this task exists, in words.
    """

    model_id: str
    kind: str
    strategy: str
    objective: str
    priority: float
    reason: str
    severity: float = 0.0
    impact: float = 0.0
    hormone_multiplier: float = 1.0
    trigger_boost: float = 1.0
    trigger_ids: tuple[str, ...] = ()
    expected_gain: float = 1.0
    waiting: int = 0
    custom: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def severity_level(gap: float) -> tuple[str, float]:
    """Seed 002's level and impact for a relative gap (:func:`severity_for_gap`, as strings)."""
    level = severity_for_gap(gap)
    return level.value, level.default_impact


def _is_accuracy_like(obj: Objective) -> bool:
    return obj.direction is Direction.MAXIMIZE and obj.ideal_value == 1.0


def strongest_by_task(observations: Sequence[Observation]) -> dict[str, Observation]:
    """The best incumbent of each task (ties: the first one given; a NaN value is never best
    unless nothing else was measured), in one pass."""
    best: dict[str, Observation] = {}
    for q in observations:
        cur = best.get(q.task)
        if cur is None or not math.isfinite(cur.value) or q.primary.is_better(q.value, cur.value):
            best[q.task] = q
    return best


def find_weaknesses(
    obs: Observation,
    peers: Sequence[Observation],
    rules: TaskRules,
    *,
    distill: bool = True,
    best_by_task: Mapping[str, Observation] | None = None,
) -> list[Weakness]:
    """The weaknesses of one model, by the seed's rules (see the module docstring).

    Args:
        obs: This model's observation.
        peers: Observations of every model (the model itself is ignored among them).
        rules: Thresholds.
        distill: Whether cross-model distillation may be proposed.
        best_by_task: :func:`strongest_by_task` of ``peers``, when the caller plans for every
            model (computed once: comparing every model with every other is quadratic, 0.6 s
            a cycle at 1000 models).
    """
    out: list[Weakness] = []
    p, v = obs.primary, obs.value
    if _is_accuracy_like(p) and v < rules.training_below:
        out.append(
            Weakness(
                obs.model,
                "training",
                p.name,
                max(p.gap(v), rules.training_below - v),
                f"{p.name} {v:.3f} < {rules.training_below}",
            )
        )
    elif _is_accuracy_like(p) and v < rules.architecture_below:
        out.append(
            Weakness(
                obs.model,
                "architecture",
                p.name,
                max(p.gap(v), rules.architecture_below - v),
                f"{p.name} {v:.3f} in [{rules.training_below}, {rules.architecture_below})",
            )
        )
    elif p.target is not None and not p.meets_target(v):
        gap = p.gap(v)
        kind = "architecture" if gap > rules.architecture_gap else "training"
        out.append(
            Weakness(
                obs.model, kind, p.name, gap, f"{p.name} {v:.4g} short of its target {p.target:g}"
            )
        )
    if rules.stalled_after and obs.training_stalled >= rules.stalled_after:
        out = [
            dataclasses.replace(
                w,
                kind="architecture",
                reason=f"{w.reason}; training stalled ({obs.training_stalled} training "
                "experiments in a row not promoted)",
            )
            if w.kind == "training"
            else w
            for w in out
        ]
    if obs.latency_ms > rules.latency_above_ms:
        gap = (obs.latency_ms - rules.latency_above_ms) / rules.latency_above_ms
        out.append(
            Weakness(
                obs.model,
                "optimisation",
                "latency_ms",
                gap,
                f"latency {obs.latency_ms:.0f} ms > {rules.latency_above_ms:g} ms",
            )
        )
    if distill:
        strongest = (
            best_by_task.get(obs.task)
            if best_by_task is not None
            else strongest_by_task([q for q in peers if q.task == obs.task]).get(obs.task)
        )
        taught = distillation_weakness(obs, strongest)
        if taught is not None:
            out.append(taught)
    return out


def distillation_weakness(obs: Observation, strongest: Observation | None) -> Weakness | None:
    """The distillation weakness of a model whose task has a stronger incumbent (``strongest``,
    see :func:`strongest_by_task`), else ``None``."""
    p, v = obs.primary, obs.value
    if strongest is None or not p.is_better(strongest.value, v):
        return None
    return Weakness(
        obs.model,
        "distillation",
        p.name,
        p.relative_improvement(v, strongest.value),
        f"{strongest.model} is stronger ({strongest.value:.4g} vs {v:.4g})",
        teacher=strongest.model,
    )
