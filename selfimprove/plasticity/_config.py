"""The data of a plasticity run: its settings, each cycle's outcome, the run's results.

:class:`PlasticityConfig` holds every setting (validated on construction), :class:`CycleOutcome`
what one cycle did and measured, :class:`PlasticityResults` the run (also ``summary.json``,
read back by :func:`load_results`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.measure.finetune import FINETUNE_LR, FinetuneConfig
from selfimprove.plasticity._degeneration import DEGENERATE, DegenerationConfig
from selfimprove.store import clean_json
from selfimprove.tasks.language import TinySpec

__all__ = [
    "LR_SCHEDULES",
    "CycleOutcome",
    "PlasticityConfig",
    "PlasticityResults",
    "Progress",
    "load_results",
]

#: Called with an event name and its data: ``pretrain`` (step, steps, loss), ``phase`` (cycle,
#: phase, max_cycles), ``cycle`` (the :class:`CycleOutcome`).
Progress = Callable[[str, dict[str, Any]], None]

#: How the learn phase's learning rate runs: over the whole run, or afresh every cycle.
LR_SCHEDULES = ("run", "cycle")


@dataclass(frozen=True)
class PlasticityConfig:
    """Settings of a plasticity run.

    Attributes:
        seed: Seeds every random choice (batches, growth, sampling, random importance).
        context: Tokens per window (capped at the model's positions).
        perplexity_tolerance: Relative validation-perplexity increase a cycle may leave over
            the run's start and, with ``accept_against_reference``, over the unpruned start
            fine-tuned with the same steps (0.05 = 5 %).
        degeneration_threshold: Highest degeneration score a cycle may leave (see
            :mod:`selfimprove.plasticity._degeneration`).
        finetune_steps: Optimiser steps of the learn phase.
        lr: Peak learning rate of the learn phase (3e-4: suits a pre-trained model; 1e-3 undoes
            part of ``tiny``'s pre-training in a few steps).
        lr_schedule: ``"run"``: one warm-up and cosine decay spread over the run's cycles, each
            cycle fine-tuning its stretch (cycle ``c`` of ``n`` takes steps ``(c - 1) * s`` to
            ``c * s`` of ``n * s``) after a short warm-up of its fresh optimiser; ``"cycle"``:
            every cycle its own full schedule from the peak rate. ``"run"`` is what a single
            fine-tuning of the same steps does, so the run ends at a low rate.
        batch_size: Windows per fine-tuning step.
        new_head_lr_multiplier: Learning-rate factor of grown heads.
        importance_batches: Batches of training windows per importance estimate.
        importance_batch_size: Windows per importance batch.
        prune_step_fraction: Largest share of heads removed per iterative step.
        min_heads_per_layer: Heads every layer keeps.
        screen_estimators: Prune with every estimator and compare them on probe training
            windows (gradient unless another is clearly lower); else the UCB1 ratings choose.
        drop_unpaid_heads: After learning, remove grown heads whose removal raises the probe
            loss by no more than a pruned head cost on average.
        eval_windows: Validation (and test) windows for perplexity.
        degeneration: Generation and scoring settings (generations are shortened to fit the
            model's positions).
        latency_repeats: Timed repeats per model.
        serving_batch: Sequences per timed call at the serving size (each ``context`` tokens);
            batch 1 is always timed too.
        measure_reference: Report the final model against the unpruned reference (the run's
            own, or fine-tuned at the end with the same plan when no cycle was judged by it).
        accept_against_reference: Keep a cycle only if it is also within the tolerance of the
            unpruned start fine-tuned with the same steps, batches and rates as the candidate
            (kept and advanced beside the pruned model: one more fine-tuning per cycle); else
            the start alone is the bar.
        forecast_before_learning: Before fine-tuning a pruned candidate, forecast its gap to
            the same-steps reference from its one-shot damage and the share of damage the run's
            earlier cycles left (:mod:`selfimprove.plasticity._forecast`); a candidate forecast
            to fail is not fine-tuned (no steps spent) and the same cycle tries a smaller
            removal; a later cycle may forecast the larger one again. Needs
            ``accept_against_reference`` and ``finetune_steps`` > 0.
        learn_when_resolved: When the search for the largest removal within the tolerance is
            resolved (or no head is left to remove), the remaining cycles fine-tune the kept
            model without pruning (judged by the same rule); else the run stops there.
        use_memory: Recall and store transformations in ``<home>/plasticity/memory.json``.
        tiny: Spec of ``tiny`` (architecture and pre-training).
        dashboard: Write ``dashboard.html`` at the end.
    """

    seed: int = 0
    context: int = 128
    perplexity_tolerance: float = 0.05
    degeneration_threshold: float = DEGENERATE
    finetune_steps: int = 100
    lr: float = FINETUNE_LR
    lr_schedule: str = "run"
    batch_size: int = 16
    new_head_lr_multiplier: float = 5.0
    importance_batches: int = 4
    importance_batch_size: int = 16
    prune_step_fraction: float = 0.1
    min_heads_per_layer: int = 1
    screen_estimators: bool = True
    drop_unpaid_heads: bool = True
    eval_windows: int = 128
    degeneration: DegenerationConfig = field(default_factory=DegenerationConfig)
    latency_repeats: int = 20
    serving_batch: int = 8
    measure_reference: bool = True
    accept_against_reference: bool = True
    forecast_before_learning: bool = True
    learn_when_resolved: bool = True
    use_memory: bool = True
    tiny: TinySpec = field(default_factory=TinySpec)
    dashboard: bool = True

    def __post_init__(self) -> None:
        if self.context < 8:
            raise ConfigError(f"context must be >= 8 tokens, but got {self.context=}.")
        if not 0 <= self.perplexity_tolerance <= 1:
            raise ConfigError(
                f"perplexity_tolerance must be in [0, 1], but got {self.perplexity_tolerance=}."
            )
        if not 0 < self.degeneration_threshold <= 1:
            raise ConfigError(
                f"degeneration_threshold must be in (0, 1], but got {self.degeneration_threshold=}."
            )
        if min(self.importance_batches, self.importance_batch_size, self.eval_windows) < 1:
            raise ConfigError(
                "importance_batches, importance_batch_size and eval_windows must be >= 1."
            )
        if self.min_heads_per_layer < 1:
            raise ConfigError(
                f"min_heads_per_layer must be >= 1, but got {self.min_heads_per_layer=}."
            )
        if self.latency_repeats < 3 or self.serving_batch < 1:
            raise ConfigError(
                "latency_repeats must be >= 3 and serving_batch >= 1, but got "
                f"{self.latency_repeats=}, {self.serving_batch=}."
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, but got "
                f"{self.lr_schedule!r}."
            )
        self.finetune_config(self.context)  # validates the fine-tuning fields

    def finetune_config(self, context: int, *, cycle: int = 1, cycles: int = 1) -> FinetuneConfig:
        """The learn phase's :class:`FinetuneConfig` for windows of ``context`` tokens, for
        cycle ``cycle`` of a run of ``cycles`` (see ``lr_schedule``)."""
        steps = self.finetune_steps
        over_run = self.lr_schedule == "run"
        return FinetuneConfig(
            steps=steps,
            schedule_start=(cycle - 1) * steps if over_run else 0,
            schedule_steps=max(cycles, cycle) * steps if over_run else 0,
            lr=self.lr,
            batch_size=self.batch_size,
            context=context,
            new_head_lr_multiplier=self.new_head_lr_multiplier,
            warmup_steps=max(1, self.finetune_steps // 10),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


@dataclass(frozen=True)
class CycleOutcome:
    """What one cycle did and measured.

    Attributes:
        cycle: Cycle number (from 1).
        accepted: Whether it was kept.
        reason: Why (the figures that decided).
        choice: Why this strategy and level were chosen.
        pruning_strategy: Importance estimator.
        pruning_level: Share of the heads pruned.
        growth_strategy: Placement of new heads.
        growth_ratio: Heads grown per head pruned.
        heads_before: Heads at the start of the cycle.
        heads_pruned: Heads removed.
        heads_grown: Heads added (and kept: grown heads that did not pay are removed again).
        heads_after: Heads of the candidate.
        heads_per_layer: The candidate's heads per layer.
        perplexity_before: Validation perplexity at the start of the cycle.
        perplexity_pruned: After pruning.
        perplexity_grown: After growth (equal to ``perplexity_pruned`` up to float rounding).
        perplexity_after: After learning (decides).
        test_perplexity_after: On the test split (reported only).
        degeneration: Score after learning.
        parameters_after: Parameters of the candidate.
        latency_before_ms: Median batch-1 latency of the pre-cycle model (timed interleaved
            with the candidate).
        latency_after_ms: The candidate's.
        serving_latency_before_ms: The same at the serving batch.
        serving_latency_after_ms: The candidate's at the serving batch.
        reward: Reward given to the strategies.
        adaptation: Label of the level change.
        restored_sha256: sha256 of the checkpoint restored after a rejection.
        reference_perplexity: The unpruned start fine-tuned with the candidate's steps and
            batches (the bar with ``accept_against_reference``), else ``None``.
        reference_steps: Fine-tuning steps that reference received.
        heads_target: Heads the search asked this cycle to have removed in total (``None``
            for a cycle that only learned).
        forecast: The forecast that let the candidate be fine-tuned (``None``: none made).
        skipped_targets: Larger totals this cycle tried first and did not fine-tune, because
            their forecast failed (``forecast_before_learning``).
    """

    cycle: int
    accepted: bool
    reason: str
    choice: str
    pruning_strategy: str
    pruning_level: float
    growth_strategy: str
    growth_ratio: float
    heads_before: int
    heads_pruned: int
    heads_grown: int
    heads_after: int
    heads_per_layer: list[int]
    perplexity_before: float
    perplexity_pruned: float
    perplexity_grown: float
    perplexity_after: float
    test_perplexity_after: float
    degeneration: float
    parameters_after: int
    latency_before_ms: float
    latency_after_ms: float
    serving_latency_before_ms: float
    serving_latency_after_ms: float
    reward: float
    adaptation: str
    restored_sha256: str | None = None
    reference_perplexity: float | None = None
    reference_steps: int = 0
    heads_target: int | None = None
    forecast: str | None = None
    skipped_targets: tuple[int, ...] = ()


@dataclass(frozen=True)
class PlasticityResults:
    """The outcome of a run.

    Attributes:
        run_dir: The run folder.
        model_name: The model optimised.
        dataset: The corpus name.
        start: Measurements of the starting model.
        final: Measurements of the final model (latency timed interleaved with the start).
        reference: The unpruned start fine-tuned with the same steps, or ``None``.
        cycles: Every cycle's outcome.
        ratings: Final strategy ratings.
        stopped: Why the run ended.
        dashboard: The dashboard file, if written.
    """

    run_dir: Path
    model_name: str
    dataset: str
    start: dict[str, Any]
    final: dict[str, Any]
    reference: dict[str, Any] | None
    cycles: list[CycleOutcome]
    ratings: dict[str, Any]
    stopped: str
    dashboard: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["dashboard"] = str(self.dashboard) if self.dashboard else None
        out = clean_json(out)
        assert isinstance(out, dict)
        return out


def load_results(run_dir: Path) -> dict[str, Any]:
    """The ``summary.json`` of a run folder.

    Raises:
        ConfigError: No readable summary.
    """
    path = run_dir / "summary.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; is {run_dir} a finished run?") from None
    return data
