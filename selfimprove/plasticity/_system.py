"""``AdaptivePlasticitySystem``: prune -> measure -> grow -> learn cycles that prove every gain.

One cycle, on the model as last accepted:

1. **decide** the pruning level, the growth placement and ratio: a remembered successful
   transformation from a similar state is reused, else the level comes from the last cycles
   (:func:`~selfimprove.plasticity._adaptation.adapt_levels`) and the strategy ratings choose
   the placement (:mod:`selfimprove.plasticity._adaptation`); every choice is logged with its
   reason;
2. **prune** ``round(level * heads)`` heads (at least one) by importance on training windows,
   iteratively (steps of at most ``prune_step_fraction`` of the heads, re-scored after each),
   by structural surgery: fewer parameters, really. With ``screen_estimators`` (the default)
   every estimator prunes the same number of heads and their pruned models are compared on
   other *training* windows (the probe): gradient (Michel et al.) is kept unless another
   estimator's loss is lower by more than two standard errors, so no fine-tuning step is spent
   on an estimator the data already shows to be worse; otherwise the ratings choose (UCB1);
3. **measure** validation perplexity of the pruned model;
4. **grow** ``round(ratio * pruned)`` function-preserving heads where the placement says
   capacity is missing (the logits before and after growth are compared and recorded);
5. **learn**: fine-tune with differential learning rates (new heads x ``new_head_lr_multiplier``;
   peak rate ``lr``, 3e-4 by default, with warm-up: a rate that does not undo the
   pre-training); with ``drop_unpaid_heads`` (the default) grown heads whose removal raises
   the probe loss by no more than a pruned head cost on average are removed again (growth
   stays only where it pays); then measure
   validation perplexity, test perplexity (reported only), degeneration of seeded generations,
   parameters, and latency interleaved with the pre-cycle model;
6. **judge**: the cycle is kept only if validation perplexity is at most
   ``start * (1 + perplexity_tolerance)`` (the *start* of the run, so small losses cannot pile
   up cycle after cycle) and the degeneration score is at most ``degeneration_threshold``.
   Otherwise it is undone for real: the pre-cycle checkpoint is read back from disk, its sha256
   checked, and it becomes the model again, and the next cycle retries at half the level.

Every phase appends a record to ``metrics.jsonl`` in ``<output_dir>/run_YYYYmmdd-HHMMSS/``,
beside the accepted checkpoints (``checkpoints/cycle_NNN``), ``summary.json``, a snapshot of the
memory and, optionally, ``dashboard.html``.

The summary is honest about what extra training alone does: with ``measure_reference`` the
*unpruned* starting model is fine-tuned with exactly the steps (and seeds) the final model
received, and the final model's perplexity is reported against it as well as against the start.

Efficiency, the right way up: ``(heads_start / heads) * (perplexity_start / perplexity)``;
higher is better and 1.0 means "as good per head as the start" (the seed's "perplexity per
head" rose when heads were removed, so pruning looked like a loss even when nothing was lost).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from selfimprove.checkpoints import atomic_write_json, sha256_hex
from selfimprove.config import resolve_home
from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.measure.finetune import FINETUNE_LR, FinetuneConfig, finetune_
from selfimprove.nn.modules import state_to_bytes
from selfimprove.nn.transformer.checkpoint import load_model, save_model
from selfimprove.nn.transformer.gates import heads_per_layer
from selfimprove.nn.transformer.growth import plan_growth
from selfimprove.nn.transformer.hf import load_pretrained, load_pretrained_tokenizer
from selfimprove.nn.transformer.importance import (
    ESTIMATORS,
    PruneStep,
    head_importance,
    prune_iteratively,
)
from selfimprove.nn.transformer.measure import (
    count_parameters,
    measure_latency,
    perplexity,
    sequence_nll,
)
from selfimprove.nn.transformer.surgery import grow_heads, prune_heads
from selfimprove.plasticity._adaptation import (
    GROWTH_PRIORS,
    MAX_PRUNING_LEVEL,
    PRUNING_PRIORS,
    StrategyRatings,
    Transformation,
    TransformationMemory,
    adapt_levels,
    cycle_reward,
)
from selfimprove.plasticity._degeneration import (
    DEGENERATE,
    DegenerationConfig,
    DegenerationReport,
    degeneration_score,
)
from selfimprove.plasticity._metrics import MetricsLog
from selfimprove.plasticity._tiny import load_tiny
from selfimprove.seeding import derive_seed
from selfimprove.store import clean_json
from selfimprove.tasks.corpus import (
    ByteTokenizer,
    Corpus,
    HFTokenizer,
    TokenData,
    Tokenizer,
    load_corpus,
    tokenize_corpus,
)
from selfimprove.tasks.language import TINY_NAME, TinySpec

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["AdaptivePlasticitySystem", "CycleOutcome", "PlasticityConfig", "PlasticityResults"]

logger = logging.getLogger(__name__)

#: Called with an event name and its data: ``pretrain`` (step, steps, loss), ``phase`` (cycle,
#: phase, max_cycles), ``cycle`` (the :class:`CycleOutcome`).
Progress = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class PlasticityConfig:
    """Settings of a plasticity run.

    Attributes:
        seed: Seeds every random choice (batches, growth, sampling, random importance).
        context: Tokens per window (capped at the model's positions).
        perplexity_tolerance: Relative validation-perplexity increase over the run's start that
            a cycle may leave (0.05 = 5 %).
        degeneration_threshold: Highest degeneration score a cycle may leave (see
            :mod:`selfimprove.plasticity._degeneration`).
        finetune_steps: Optimiser steps of the learn phase.
        lr: Peak learning rate of the learn phase (3e-4: suits a pre-trained model; 1e-3 undoes
            part of ``tiny``'s pre-training in a few steps).
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
        measure_reference: Fine-tune the unpruned start with the same steps for the summary.
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
        self.finetune_config(self.context)  # validates the fine-tuning fields

    def finetune_config(self, context: int) -> FinetuneConfig:
        """The learn phase's :class:`FinetuneConfig` for windows of ``context`` tokens."""
        return FinetuneConfig(
            steps=self.finetune_steps,
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or auto.") from None
    if device.type == "cuda" and (
        not torch.cuda.is_available()
        or (device.index is not None and device.index >= torch.cuda.device_count())
    ):
        raise ConfigError(f"device {name!r} is not available here; use --device cpu.")
    return device


def _to(model: GPT2LMHeadModel, device: torch.device) -> GPT2LMHeadModel:
    """``model`` moved to ``device`` in place, in eval mode."""
    nn.Module.to(model, device)
    model.eval()
    return model


def _new_run_dir(output_dir: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = output_dir / f"run_{stamp}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = output_dir / f"run_{stamp}-{n}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the run folder {run_dir} ({exc.strerror}); pass a writable "
            "--output_dir."
        ) from None
    return run_dir


class AdaptivePlasticitySystem:
    """Prune -> measure -> grow -> learn cycles on a GPT-2-family model (seed 004's API).

    The constructor stores its arguments; the model and data are loaded by :meth:`setup`
    (called by :meth:`run_adaptive_optimization`). After a run, ``model_`` is the final model,
    ``results_`` the results.

    Args:
        model_name: ``"tiny"`` (built and cached here), or a GPT-2 model name or folder
            available offline.
        dataset: ``None`` / ``"pydoc"`` (built-in), a text-file path, an offline Hugging Face
            dataset name, or a :class:`Corpus`.
        output_dir: Where ``run_YYYYmmdd-HHMMSS/`` folders are made.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        verbose: Log each phase at INFO (else DEBUG).
        config: Everything else (:class:`PlasticityConfig`).
        home: Home folder (cached ``tiny``, the memory of transformations).
        progress: Callback for progress events (the CLI draws its bars from it).

    Example::

        system = AdaptivePlasticitySystem("tiny", None, "./output/adaptive_plasticity")
        results = system.run_adaptive_optimization(max_cycles=3, initial_pruning_level=0.2,
                                                   initial_growth_ratio=0.5)
    """

    def __init__(
        self,
        model_name: str = TINY_NAME,
        dataset: str | os.PathLike[str] | Corpus | None = None,
        output_dir: str | os.PathLike[str] = "./output/adaptive_plasticity",
        device: str = "cpu",
        verbose: bool = False,
        *,
        config: PlasticityConfig | None = None,
        home: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.model_name = model_name
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.device = device
        self.verbose = verbose
        self.config = config or PlasticityConfig()
        self.home = home
        self.progress = progress
        self._ready = False

    # ------------------------------------------------------------------ set-up
    def _log(self, msg: str, *args: object) -> None:
        logger.log(logging.INFO if self.verbose else logging.DEBUG, msg, *args)

    def _emit(self, event: str, **data: Any) -> None:
        if self.progress is not None:
            self.progress(event, data)

    def setup(self) -> AdaptivePlasticitySystem:
        """Load the tokenizer, corpus and model (once).

        Returns:
            ``self``.

        Raises:
            ConfigError: Bad device or data too small.
            NotFoundError: Model or dataset not available offline.
        """
        if self._ready:
            return self
        self.device_ = _device(self.device)
        corpus = self.dataset if isinstance(self.dataset, Corpus) else load_corpus(self.dataset)
        tokenizer: Tokenizer
        if self.model_name == TINY_NAME:
            tokenizer = ByteTokenizer()
            model = load_tiny(
                self.config.tiny,
                home=None if self.home is None else Path(self.home),
                progress=lambda s, n, loss: self._emit("pretrain", step=s, steps=n, loss=loss),
            )
        else:
            model = load_pretrained(self.model_name)
            try:
                tokenizer = HFTokenizer(load_pretrained_tokenizer(self.model_name))
            except NotFoundError:
                if int(model.config.vocab_size) != 256:
                    raise
                # A byte-level model saved without tokenizer files (e.g. tiny, saved with
                # save_pretrained): its tokens are UTF-8 bytes.
                tokenizer = ByteTokenizer()
        model.config.use_cache = False
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ConfigError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but {self.model_name!r} only "
                f"{model.config.vocab_size} embeddings."
            )
        self.corpus_ = corpus
        self.tokenizer_ = tokenizer
        self.data_: TokenData = tokenize_corpus(corpus, tokenizer)
        self.context_ = min(self.config.context, int(model.config.n_positions))
        deg = self.config.degeneration
        room = int(model.config.n_positions) - deg.prompt_tokens
        if deg.new_tokens > room:
            if room < deg.repeat_n + 1:
                raise ConfigError(
                    f"degeneration prompts of {deg.prompt_tokens} tokens leave no room to "
                    f"generate in the model's {model.config.n_positions} positions."
                )
            # Generations are shortened to fit the model's positions (same seed, same score).
            deg = replace(deg, new_tokens=room)
        self.degeneration_ = deg
        self.val_ = self.data_.windows("validation", self.context_, self.config.eval_windows)
        self.test_ = self.data_.windows("test", self.context_, self.config.eval_windows)
        self.model_: GPT2LMHeadModel = _to(model, self.device_)
        self._ready = True
        return self

    # ------------------------------------------------------------------ measurements
    def _perplexity(self, model: GPT2LMHeadModel, split: str = "validation") -> float:
        return perplexity(model, self.val_ if split == "validation" else self.test_)

    def _degeneration(self, model: GPT2LMHeadModel) -> DegenerationReport:
        cfg = self.degeneration_
        return degeneration_score(
            model,
            self.data_,
            replace(cfg, seed=derive_seed(self.config.seed, "deg", cfg.seed)),
            tokenizer=self.tokenizer_,
        )

    def _latency(
        self, *models: GPT2LMHeadModel, repeats: int | None = None
    ) -> list[tuple[float, float]]:
        """Median ms per model at batch 1 and at the serving batch (timed interleaved)."""
        out = []
        for batch in (1, self.config.serving_batch):
            rows = torch.arange(batch) % len(self.val_)
            x = self.val_[rows, :-1].to(self.device_)  # (batch, T)
            times = measure_latency(models, x, repeats=repeats or self.config.latency_repeats)
            out.append([float(np.median(t)) for t in times])
        return list(zip(out[0], out[1], strict=True))

    def _importance_batches(self, seed: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(derive_seed("importance-batches", seed) % 2**63)
        return [
            self.data_.random_batch(self.context_, self.config.importance_batch_size, gen)
            for _ in range(self.config.importance_batches)
        ]

    def _probe(self, seed: int) -> torch.Tensor:
        """``eval_windows`` training windows, drawn apart from the importance batches, that
        screen the estimators and test whether grown heads pay: ``(N, T + 1)``."""
        gen = torch.Generator().manual_seed(derive_seed("probe-windows", seed) % 2**63)
        return self.data_.random_batch(self.context_, self.config.eval_windows, gen)

    @staticmethod
    @torch.no_grad()
    def _window_losses(model: GPT2LMHeadModel, windows: torch.Tensor) -> torch.Tensor:
        """Mean next-token loss of each window, ``(N,)`` nats (eval mode, restored after)."""
        was_training = model.training
        model.eval()
        try:
            return torch.cat([sequence_nll(model, w).double() for w in windows.split(32)])
        finally:
            model.train(was_training)

    def _screen(
        self,
        model: GPT2LMHeadModel,
        n: int,
        batches: list[torch.Tensor],
        probe: torch.Tensor,
        seed: int,
    ) -> tuple[str, GPT2LMHeadModel, dict[int, list[int]], list[PruneStep], dict[str, float]]:
        """Prune ``n`` heads with every estimator and pick one on the probe windows.

        The first of :data:`ESTIMATORS` (gradient, Michel et al.) is kept unless another
        estimator's pruned model has a lower probe loss by more than two standard errors of the
        per-window difference (paired, same windows): a screen on a few windows must not trade
        the best-founded estimator for noise. Among those that clear the bar, the lowest loss
        wins.

        Returns:
            The estimator, its pruned model, the removed heads, its steps, and every
            estimator's mean probe loss (nats).
        """
        cfg = self.config
        runs: dict[str, tuple[GPT2LMHeadModel, dict[int, list[int]], list[PruneStep]]] = {}
        per_window: dict[str, torch.Tensor] = {}
        for name in ESTIMATORS:
            runs[name] = prune_iteratively(
                model,
                n,
                name,
                batches,
                step_fraction=cfg.prune_step_fraction,
                min_heads=cfg.min_heads_per_layer,
                seed=seed,
            )
            per_window[name] = self._window_losses(runs[name][0], probe)
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

    def _drop_unpaid(
        self,
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

        Returns:
            The model (``model`` itself if none goes), the removed positions, the reason.
        """
        with_all = float(self._window_losses(model, probe).mean())
        bar = max(0.0, head_cost)
        unpaid: dict[int, list[int]] = {}
        for layer, positions in sorted(new_heads.items()):
            for pos in positions:
                alone = prune_heads(model, {layer: [pos]})
                if float(self._window_losses(alone, probe).mean()) - with_all <= bar:
                    unpaid.setdefault(layer, []).append(pos)
        if not unpaid:
            return model, {}, f"every grown head pays more than {bar:.2e} nats (a pruned head)"
        trimmed = prune_heads(model, unpaid)
        without = float(self._window_losses(trimmed, probe).mean())
        n = sum(len(v) for v in unpaid.values())
        if without - with_all > bar * n:
            return (
                model,
                {},
                f"{n} grown heads pay together ({without - with_all:.2e} nats > {n} x "
                f"{bar:.2e}): kept",
            )
        return (
            trimmed,
            unpaid,
            f"{n} grown heads did not pay (probe loss {with_all:.4f} with them, {without:.4f} "
            f"without; a pruned head cost {bar:.2e}): removed",
        )

    def _snapshot(self, model: GPT2LMHeadModel) -> dict[str, Any]:
        heads = heads_per_layer(model)
        return {
            "heads": sum(heads),
            "heads_per_layer": heads,
            "parameters": count_parameters(model),
        }

    # ------------------------------------------------------------------ the run
    def run_adaptive_optimization(
        self,
        max_cycles: int = 10,
        initial_pruning_level: float = 0.2,
        initial_growth_ratio: float = 0.5,
    ) -> PlasticityResults:
        """Run up to ``max_cycles`` prune -> measure -> grow -> learn cycles.

        Args:
            max_cycles: Cycles to run (the run stops early when no head can be removed).
            initial_pruning_level: Share of the current heads pruned in the first cycle
                (0 < level <= 0.5).
            initial_growth_ratio: Heads grown per head pruned in the first cycle (0 to 1).

        Returns:
            The results (also written to ``summary.json``).

        Raises:
            ConfigError: A bad argument, device, or data.
            NotFoundError: Model or dataset not available offline.
            CheckpointError: A checkpoint failed its sha256 check when restoring.
            DivergedError: Fine-tuning produced NaN.
        """
        if max_cycles < 1:
            raise ConfigError(f"max_cycles must be >= 1, but got {max_cycles=}.")
        if not 0 < initial_pruning_level <= MAX_PRUNING_LEVEL:
            raise ConfigError(
                f"initial_pruning_level must be in (0, {MAX_PRUNING_LEVEL}], but got "
                f"{initial_pruning_level=}."
            )
        if not 0 <= initial_growth_ratio <= 1:
            raise ConfigError(
                f"initial_growth_ratio must be in [0, 1], but got {initial_growth_ratio=}."
            )
        self.setup()
        cfg = self.config
        run_dir = _new_run_dir(self.output_dir)
        log = MetricsLog(run_dir)
        atomic_write_json(
            run_dir / "config.json",
            clean_json(
                {
                    "model_name": self.model_name,
                    "dataset": self.corpus_.name,
                    "corpus_sha256": self.corpus_.fingerprint,
                    "device": str(self.device_),
                    "max_cycles": max_cycles,
                    "initial_pruning_level": initial_pruning_level,
                    "initial_growth_ratio": initial_growth_ratio,
                    "context": self.context_,
                    "config": cfg.to_dict(),
                    "torch": torch.__version__,
                }
            ),
        )
        memory = TransformationMemory(
            resolve_home(self.home) / "plasticity" / "memory.json" if cfg.use_memory else None
        )
        pruning = StrategyRatings(PRUNING_PRIORS)
        growth = StrategyRatings(GROWTH_PRIORS)

        original = self.model_
        original_heads = heads_per_layer(original)
        ckpt_dir = run_dir / "checkpoints"
        saved = save_model(original, ckpt_dir / "cycle_000", extra={"cycle": 0})
        # Memories belong to one starting model: its name and the digest of its weights.
        model_key = f"{self.model_name}@{saved.sha256[:16]}"
        start_ppl = self._perplexity(original)
        start_deg = self._degeneration(original)
        ((start_latency, start_serving),) = self._latency(original)
        start = {
            **self._snapshot(original),
            "perplexity": start_ppl,
            "test_perplexity": self._perplexity(original, "test"),
            "degeneration": start_deg.score,
            "degeneration_report": start_deg.to_dict(),
            "latency_ms": start_latency,
            "serving_latency_ms": start_serving,
            "serving_batch": cfg.serving_batch,
            "sha256": saved.sha256,
        }
        log.write(0, "baseline", {**start, "slots": [list(range(h)) for h in original_heads]})
        self._log(
            "start: %d heads, %d parameters, perplexity %.3f, degeneration %.3f",
            start["heads"],
            start["parameters"],
            start_ppl,
            start_deg.score,
        )

        slots = [list(range(h)) for h in original_heads]  # alive slot ids per layer, in order
        gone: list[list[int]] = [[] for _ in original_heads]  # pruned slot ids per layer
        next_slot = list(original_heads)
        current, current_ppl, current_saved = original, start_ppl, saved
        level, ratio = initial_pruning_level, initial_growth_ratio
        accepted_seeds: list[int] = []
        outcomes: list[CycleOutcome] = []
        stopped = "max_cycles"
        for cycle in range(1, max_cycles + 1):
            heads = heads_per_layer(current)
            removable = sum(max(0, h - cfg.min_heads_per_layer) for h in heads)
            if removable == 0:
                stopped = "no_head_left_to_remove"
                break
            seed = derive_seed(cfg.seed, "cycle", cycle)
            fractions = [h / o for h, o in zip(heads, original_heads, strict=True)]
            rel_ppl = current_ppl / start_ppl
            ppl_before, next_slot_before = current_ppl, list(next_slot)

            # ---- decide
            hit = memory.recall(model_key, fractions, rel_ppl)
            if hit is not None:
                p_strategy, c_level = hit.pruning_strategy, hit.pruning_level
                g_strategy, c_ratio = hit.growth_strategy, hit.growth_ratio
                choice = (
                    f"memory: reused {hit.run} cycle {hit.cycle} (reward {hit.reward:+.3f}) "
                    "from a similar state"
                )
            else:
                p_strategy, p_why = pruning.choose()
                g_strategy, g_why = growth.choose()
                c_level, c_ratio = level, ratio
                choice = f"pruning {p_why}; growth {g_why}"
            screen = cfg.screen_estimators and hit is None
            failed = [
                t.pruning_level
                for t in memory.failures(model_key, fractions, rel_ppl)
                if (screen or t.pruning_strategy == p_strategy) and t.pruning_level <= c_level
            ]
            if failed:
                c_level = 0.5 * min(failed)
                choice += f"; memory: level {min(failed):.3g} failed here before, now {c_level:.3g}"
            n_prune = min(removable, max(1, round(c_level * sum(heads))))
            self._emit("phase", cycle=cycle, phase="prune", max_cycles=max_cycles)

            # ---- prune
            batches = self._importance_batches(seed)
            probe = self._probe(seed)
            screened: dict[str, float] | None = None
            if screen:
                p_strategy, pruned, removed, steps, screened = self._screen(
                    current, n_prune, batches, probe, seed
                )
                ranked = sorted(screened.items(), key=lambda kv: kv[1])
                choice = (
                    f"pruning {p_strategy}: screened on probe training windows ("
                    + ", ".join(f"{k} {v:.4f}" for k, v in ranked)
                    + f" nats); growth {g_why}"
                )
            else:
                pruned, removed, steps = prune_iteratively(
                    current,
                    n_prune,
                    p_strategy,
                    batches,
                    step_fraction=cfg.prune_step_fraction,
                    min_heads=cfg.min_heads_per_layer,
                    seed=seed,
                )
            grad_scores = (
                steps[0].importance
                if p_strategy == "gradient"
                else [s.tolist() for s in head_importance(current, batches, "gradient")]
            )
            pruned_slots = [[layer, slots[layer][p]] for layer, ps in removed.items() for p in ps]
            new_slots = [
                [s for j, s in enumerate(layer_slots) if j not in set(removed.get(layer, []))]
                for layer, layer_slots in enumerate(slots)
            ]
            new_gone = [list(g) for g in gone]
            for layer, slot in pruned_slots:
                new_gone[layer].append(slot)
            log.write(
                cycle,
                "prune",
                {
                    **self._snapshot(pruned),
                    "strategy": p_strategy,
                    "level": c_level,
                    "choice": choice,
                    "slots": slots,
                    "importance": {"method": p_strategy, "scores": steps[0].importance},
                    "screen": screened,
                    "gradient": grad_scores,
                    "pruned": pruned_slots,
                    "steps": len(steps),
                },
            )

            # ---- measure
            self._emit("phase", cycle=cycle, phase="measure", max_cycles=max_cycles)
            ppl_pruned = self._perplexity(pruned)
            log.write(cycle, "measure", {**self._snapshot(pruned), "perplexity": ppl_pruned})

            # ---- grow
            self._emit("phase", cycle=cycle, phase="grow", max_cycles=max_cycles)
            n_grow = round(c_ratio * n_prune)
            raw = (
                head_importance(pruned, batches, "gradient", normalise=False)
                if g_strategy == "importance" and n_grow
                else None
            )
            plan = plan_growth(
                n_grow,
                heads_per_layer(pruned),
                strategy=g_strategy,
                max_heads=original_heads,
                raw_importance=raw,
                seed=seed,
            )
            grown, new_positions = grow_heads(pruned, plan, seed=seed)
            probe = self.val_[:4]
            with torch.no_grad():
                before_logits = pruned(input_ids=probe[:, :-1].to(self.device_)).logits
                after_logits = grown(input_ids=probe[:, :-1].to(self.device_)).logits
            max_change = float((after_logits - before_logits).abs().max())
            ppl_grown = self._perplexity(grown) if plan else ppl_pruned
            grown_slots = []
            for layer, positions in new_positions.items():
                for _ in positions:
                    if new_gone[layer]:
                        slot = min(new_gone[layer])
                        new_gone[layer].remove(slot)
                        grown_slots.append([layer, slot, 1])  # regrown into a pruned slot
                    else:
                        slot = next_slot[layer]
                        next_slot[layer] += 1
                        grown_slots.append([layer, slot, 0])
                    new_slots[layer].append(slot)
            log.write(
                cycle,
                "grow",
                {
                    **self._snapshot(grown),
                    "strategy": g_strategy,
                    "ratio": c_ratio,
                    "plan": {str(k): v for k, v in plan.items()},
                    "grown": grown_slots,
                    "perplexity": ppl_grown,
                    "max_logit_change": max_change,
                    "slots": new_slots,
                },
            )

            # ---- learn
            self._emit("phase", cycle=cycle, phase="learn", max_cycles=max_cycles)
            ft_seed = derive_seed(seed, "finetune")
            result = finetune_(
                grown,
                self.data_,
                cfg.finetune_config(self.context_),
                seed=ft_seed,
                new_heads=new_positions,
            )
            grown.eval()
            dropped: dict[int, list[int]] = {}
            pay = "no head grown"
            if cfg.drop_unpaid_heads and any(new_positions.values()):
                head_cost = (
                    float(self._window_losses(pruned, probe).mean())
                    - float(self._window_losses(current, probe).mean())
                ) / max(1, n_prune)
                grown, dropped, pay = self._drop_unpaid(
                    grown, dict(new_positions), probe, head_cost
                )
                for layer, positions in dropped.items():
                    gone_slots = [new_slots[layer][pos] for pos in positions]
                    new_slots[layer] = [x for x in new_slots[layer] if x not in gone_slots]
                    new_gone[layer].extend(gone_slots)
                    grown_slots = [
                        g for g in grown_slots if not (g[0] == layer and g[1] in gone_slots)
                    ]
            ppl_after = self._perplexity(grown)
            test_after = self._perplexity(grown, "test")
            deg = self._degeneration(grown)
            (lat_before, serving_before), (lat_after, serving_after) = self._latency(current, grown)
            snap = self._snapshot(grown)
            log.write(
                cycle,
                "learn",
                {
                    **snap,
                    "perplexity": ppl_after,
                    "test_perplexity": test_after,
                    "degeneration": deg.score,
                    "degeneration_report": deg.to_dict(),
                    "latency_ms": lat_after,
                    "latency_before_ms": lat_before,
                    "serving_latency_ms": serving_after,
                    "serving_latency_before_ms": serving_before,
                    "finetune_steps": result.steps,
                    "growth_paid": pay,
                    "slots": new_slots,
                    "grown_removed": {str(k): v for k, v in dropped.items()},
                    "finetune_first_loss": result.losses[0] if result.losses else None,
                    "finetune_last_loss": result.losses[-1] if result.losses else None,
                    "efficiency": (start["heads"] / snap["heads"]) * (start_ppl / ppl_after),
                },
            )

            # ---- judge
            limit = start_ppl * (1 + cfg.perplexity_tolerance)
            ok_ppl = ppl_after <= limit
            ok_deg = deg.score <= cfg.degeneration_threshold
            accepted = ok_ppl and ok_deg
            reason = (
                f"perplexity {ppl_after:.4g} {'<=' if ok_ppl else '>'} limit {limit:.4g} "
                f"(start {start_ppl:.4g} + {cfg.perplexity_tolerance:.0%}); degeneration "
                f"{deg.score:.3f} {'<=' if ok_deg else '>'} {cfg.degeneration_threshold:.3f}"
            )
            restored_sha: str | None = None
            if accepted:
                current_saved = save_model(
                    grown, ckpt_dir / f"cycle_{cycle:03d}", extra={"cycle": cycle}
                )
                current, current_ppl = grown, ppl_after
                slots, gone = new_slots, new_gone
                accepted_seeds.append(ft_seed)
            else:
                # Undo for real: the pre-cycle weights come back from disk, checksum verified.
                current = _to(load_model(current_saved.weights.with_suffix("")), self.device_)
                restored_sha = sha256_hex(state_to_bytes(current))
                next_slot = next_slot_before
            reward = cycle_reward(
                accepted=accepted,
                heads_before=sum(heads),
                heads_after=snap["heads"],
                perplexity_start=start_ppl,
                perplexity_after=ppl_after,
                tolerance=cfg.perplexity_tolerance,
            )
            pruning.update(p_strategy, reward)
            if n_grow:
                growth.update(g_strategy, reward)
            increase = ppl_after / start_ppl - 1
            margin = (
                1 - min(1.0, max(0.0, increase) / cfg.perplexity_tolerance)
                if cfg.perplexity_tolerance > 0
                else 0.0
            )
            level, ratio, label = adapt_levels(c_level, c_ratio, accepted=accepted, margin=margin)
            level = min(MAX_PRUNING_LEVEL, max(level, 1 / max(1, sum(heads_per_layer(current)))))
            memory.add(
                Transformation(
                    model=model_key,
                    run=run_dir.name,
                    cycle=cycle,
                    head_fractions=fractions,
                    relative_perplexity=rel_ppl,
                    pruning_strategy=p_strategy,
                    pruning_level=c_level,
                    growth_strategy=g_strategy,
                    growth_ratio=c_ratio,
                    pruned=[[int(a), int(b)] for a, b in pruned_slots],
                    grown=[[int(a), int(b)] for a, b, _ in grown_slots],
                    accepted=accepted,
                    reward=reward,
                )
            )
            outcome = CycleOutcome(
                cycle=cycle,
                accepted=accepted,
                reason=reason,
                choice=choice,
                pruning_strategy=p_strategy,
                pruning_level=c_level,
                growth_strategy=g_strategy,
                growth_ratio=c_ratio,
                heads_before=sum(heads),
                heads_pruned=n_prune,
                heads_grown=sum(plan.values()) - sum(len(v) for v in dropped.values()),
                heads_after=snap["heads"],
                heads_per_layer=snap["heads_per_layer"],
                perplexity_before=ppl_before,
                perplexity_pruned=ppl_pruned,
                perplexity_grown=ppl_grown,
                perplexity_after=ppl_after,
                test_perplexity_after=test_after,
                degeneration=deg.score,
                parameters_after=snap["parameters"],
                latency_before_ms=lat_before,
                latency_after_ms=lat_after,
                serving_latency_before_ms=serving_before,
                serving_latency_after_ms=serving_after,
                reward=reward,
                adaptation=label,
                restored_sha256=restored_sha,
            )
            outcomes.append(outcome)
            log.write(
                cycle,
                "decision",
                {
                    "accepted": accepted,
                    "reason": reason,
                    "reward": reward,
                    "adaptation": label,
                    "next_pruning_level": level,
                    "next_growth_ratio": ratio,
                    "restored_sha256": restored_sha,
                    "checkpoint_sha256": current_saved.sha256,
                    "pruning_strategy": p_strategy,
                    "growth_strategy": g_strategy,
                    "ratings": {"pruning": pruning.to_dict(), "growth": growth.to_dict()},
                    **self._snapshot(current),
                },
            )
            self._log("cycle %d: %s (%s)", cycle, "accepted" if accepted else "rejected", reason)
            self._emit("cycle", outcome=outcome, max_cycles=max_cycles)

        # ---- final measurements
        self._emit("phase", cycle=len(outcomes), phase="final", max_cycles=max_cycles)
        self.model_ = current
        (lat_start, serving_start), (lat_final, serving_final) = self._latency(
            original, current, repeats=cfg.latency_repeats * 2
        )
        final_snap = self._snapshot(current)
        final_ppl = current_ppl
        final_deg = self._degeneration(current) if outcomes else start_deg
        final = {
            **final_snap,
            "perplexity": final_ppl,
            "test_perplexity": self._perplexity(current, "test"),
            "degeneration": final_deg.score,
            "latency_ms": lat_final,
            "start_latency_ms": lat_start,
            "latency_ratio": lat_final / lat_start,
            "serving_latency_ms": serving_final,
            "start_serving_latency_ms": serving_start,
            "serving_latency_ratio": serving_final / serving_start,
            "serving_batch": cfg.serving_batch,
            "parameter_ratio": final_snap["parameters"] / start["parameters"],
            "perplexity_ratio": final_ppl / start_ppl,
            "efficiency": (start["heads"] / final_snap["heads"]) * (start_ppl / final_ppl),
            "accepted_cycles": sum(o.accepted for o in outcomes),
            "sha256": current_saved.sha256,
        }
        reference = None
        if cfg.measure_reference and accepted_seeds:
            ref_model = copy.deepcopy(original)
            for s in accepted_seeds:
                finetune_(ref_model, self.data_, cfg.finetune_config(self.context_), seed=s)
            ref_model.eval()
            ref_ppl = self._perplexity(ref_model)
            reference = {
                "what": "the unpruned start fine-tuned with the same steps and seeds",
                "finetune_steps": cfg.finetune_steps * len(accepted_seeds),
                "perplexity": ref_ppl,
                "test_perplexity": self._perplexity(ref_model, "test"),
                "final_vs_reference": final_ppl / ref_ppl,
            }
        log.write(0, "final", {**final, "reference": reference, "stopped": stopped})
        memory_path = run_dir / "memory.json"
        atomic_write_json(
            memory_path,
            clean_json({"transformations": [asdict(t) for t in memory.items]}),
        )
        results = PlasticityResults(
            run_dir=run_dir,
            model_name=self.model_name,
            dataset=self.corpus_.name,
            start={k: v for k, v in start.items() if k != "degeneration_report"},
            final=final,
            reference=reference,
            cycles=outcomes,
            ratings={"pruning": pruning.to_dict(), "growth": growth.to_dict()},
            stopped=stopped,
        )
        atomic_write_json(run_dir / "summary.json", results.to_dict())
        if cfg.dashboard:
            from selfimprove.plasticity._dashboard import build_dashboard

            results = PlasticityResults(
                **{**results.__dict__, "dashboard": build_dashboard(run_dir)}
            )
            atomic_write_json(run_dir / "summary.json", results.to_dict())
        self.results_ = results
        self._log(
            "done: heads %d -> %d, parameters %d -> %d, perplexity %.3f -> %.3f, "
            "latency x%.3f (batch 1), x%.3f (batch %d)",
            start["heads"],
            final["heads"],
            start["parameters"],
            final["parameters"],
            start_ppl,
            final_ppl,
            final["latency_ratio"],
            final["serving_latency_ratio"],
            cfg.serving_batch,
        )
        return results


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
