"""What a plasticity cycle's steps share: the run, its state, and each step's result.

:class:`RunContext` is fixed for a run (its ratings and memory learn), :class:`RunState` is the
model as last accepted, and :class:`Choice`, :class:`Pruned`, :class:`Grown`, :class:`Learned`
are what the steps of :mod:`selfimprove.plasticity._cycle` return to the next ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfimprove.measure.finetune import FinetuneResult
from selfimprove.nn.transformer.checkpoint import SavedModel
from selfimprove.plasticity._adaptation import StrategyRatings, TransformationMemory
from selfimprove.plasticity._config import CycleOutcome, PlasticityConfig
from selfimprove.plasticity._degeneration import DegenerationReport
from selfimprove.plasticity._ledger import PlasticityLedger
from selfimprove.plasticity._metrics import MetricsLog
from selfimprove.plasticity._reference import ReferenceTrack
from selfimprove.plasticity._search import RemovalSearch
from selfimprove.plasticity._slots import SlotBook
from selfimprove.plasticity._workbench import Workbench

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["Choice", "Grown", "Learned", "Pruned", "RunContext", "RunState"]


@dataclass(frozen=True)
class RunContext:
    """What every cycle of a run reads: fixed for the run (the ratings and memory learn).

    Attributes:
        bench: Data and measurements.
        config: The run's settings.
        log: The run's ``metrics.jsonl``.
        ledger: The run's rows in the store.
        memory: Remembered transformations.
        pruning: Ratings of the importance estimators.
        growth: Ratings of the growth placements.
        run_dir: The run folder.
        model_key: ``name@sha256[:16]`` of the starting model (memories belong to it).
        original_heads: Heads per layer of the starting model.
        start: Measurements of the starting model.
        max_cycles: Cycles the run may take (for progress events).
        emit: Progress callback (event name, then keyword data).
        verbose: Log each cycle at INFO (else DEBUG).
    """

    bench: Workbench
    config: PlasticityConfig
    log: MetricsLog
    ledger: PlasticityLedger
    memory: TransformationMemory
    pruning: StrategyRatings
    growth: StrategyRatings
    run_dir: Path
    model_key: str
    original_heads: list[int]
    start: dict[str, Any]
    max_cycles: int
    emit: Callable[..., None]
    verbose: bool = False

    @property
    def start_perplexity(self) -> float:
        """Validation perplexity of the starting model (the rule's reference)."""
        return float(self.start["perplexity"])

    def phase(self, cycle: int, name: str) -> None:
        """Tell the progress callback a phase begins."""
        self.emit("phase", cycle=cycle, phase=name, max_cycles=self.max_cycles)


@dataclass
class RunState:
    """The model as last accepted and what the next cycle starts from.

    Attributes:
        model: The current model.
        perplexity: Its validation perplexity.
        saved: Its checkpoint on disk.
        book: Slot ids of its heads.
        level: The first cycle's pruning level (later cycles' come from ``search``).
        ratio: Next cycle's growth ratio.
        reference_plan: ``(seed, cycle)`` of the kept cycles' fine-tuning: what the final model
            received, and what the summary replays on the unpruned start when no track was kept.
        outcomes: Every cycle's outcome so far.
        search: The bracket of heads removed in total (made by the first cycle).
        reference: The unpruned start advanced with the kept cycles' fine-tuning (made by the
            first cycle when the run judges against it).
    """

    model: GPT2LMHeadModel
    perplexity: float
    saved: SavedModel
    book: SlotBook
    level: float
    ratio: float
    reference_plan: list[tuple[int, int]] = field(default_factory=list)
    outcomes: list[CycleOutcome] = field(default_factory=list)
    search: RemovalSearch | None = None
    reference: ReferenceTrack | None = None


@dataclass(frozen=True)
class Choice:
    """What a cycle will try, and why (:func:`choose`). ``n_prune == 0``: the cycle only
    learns (the search is resolved); ``target``: heads removed in total after the cycle."""

    cycle: int
    seed: int
    heads: list[int]
    fractions: list[float]
    perplexity_before: float
    relative_perplexity: float
    pruning_strategy: str
    level: float
    growth_strategy: str
    ratio: float
    why: str
    growth_why: str
    screen: bool
    n_prune: int
    target: int | None = None
    search_why: str = ""

    @property
    def n_grow(self) -> int:
        """Heads to grow: ``round(ratio * n_prune)``."""
        return round(self.ratio * self.n_prune)


@dataclass(frozen=True)
class Pruned:
    """The pruned model (:func:`prune`)."""

    model: GPT2LMHeadModel
    strategy: str
    why: str
    slots: list[list[int]]
    batches: list[torch.Tensor]


@dataclass(frozen=True)
class Grown:
    """The grown model (:func:`grow`)."""

    model: GPT2LMHeadModel
    new_positions: dict[int, list[int]]
    planned: int
    perplexity: float
    slots: list[list[int]]


@dataclass(frozen=True)
class Learned:
    """The learned candidate and its measurements (:func:`learn`)."""

    model: GPT2LMHeadModel
    finetune_seed: int
    finetune: FinetuneResult
    dropped: dict[int, list[int]]
    grown_slots: list[list[int]]
    perplexity: float
    test_perplexity: float
    degeneration: DegenerationReport
    latency_before_ms: float
    latency_after_ms: float
    serving_before_ms: float
    serving_after_ms: float
    snapshot: dict[str, Any]
    reference_perplexity: float | None = None
    reference_steps: int = 0
