"""``AdaptivePlasticitySystem``: prune -> measure -> grow -> learn cycles that prove every gain.

One cycle, on the model as last accepted:

1. **decide** how many heads to remove and the growth placement and ratio: a remembered
   successful transformation from a similar state is reused, else the removal comes from a
   search for the largest total removal within the tolerance
   (:mod:`selfimprove.plasticity._search`: it expands while cycles are kept, bisects after a
   rolled-back one, and stops when the bracket is narrower than one head per layer; the
   remaining cycles only fine-tune), the growth ratio shrinks with the share of grown heads
   that paid (off once none did) and the strategy ratings choose the placement
   (:mod:`selfimprove.plasticity._adaptation`); every choice is logged with its reason;
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
6. **decide**: :func:`selfimprove.plasticity._acceptance.judge_candidate` keeps the cycle only
   if validation perplexity is at most ``(1 + perplexity_tolerance)`` times both the *start* of
   the run (so small losses cannot pile up cycle after cycle) and the *unpruned start
   fine-tuned with the same steps, batches and learning rates* (``accept_against_reference``,
   the default: a pruned model must keep up with what the training alone would have given;
   a cycle that only learns is kept when it lowered perplexity), and the
   degeneration score is at most ``degeneration_threshold``. Otherwise it is undone for real:
   the pre-cycle checkpoint is read back from disk, its sha256 checked, and it becomes the
   model again, and the search retries a smaller removal.
7. **record**: the strategies are rewarded, the next level set, the transformation remembered;
   the cycle becomes an experiment in the one store (``selfimprove history`` shows it) and a
   kept cycle a version pointing at its checkpoint (:mod:`selfimprove.plasticity._ledger`).

The steps are functions in :mod:`selfimprove.plasticity._cycle`; this module sets a run up,
chains its cycles and measures the end.

Every phase appends a record to ``metrics.jsonl`` in ``<output_dir>/run_YYYYmmdd-HHMMSS/``,
beside the accepted checkpoints (``checkpoints/cycle_NNN``), ``summary.json``, a snapshot of the
memory and, optionally, ``dashboard.html``.

The summary is honest about what extra training alone does: with ``measure_reference`` the
*unpruned* starting model is fine-tuned with exactly the steps, seeds and learning rates the
final model received, and the final model's perplexity is reported against it as well as
against the start.

Efficiency, the right way up: ``(heads_start / heads) * (perplexity_start / perplexity)``;
higher is better and 1.0 means "as good per head as the start" (the seed's "perplexity per
head" rose when heads were removed, so pruning looked like a loss even when nothing was lost).
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfimprove.checkpoints import atomic_write_json
from selfimprove.config import resolve_home
from selfimprove.errors import ConfigError
from selfimprove.measure.finetune import finetune_
from selfimprove.nn.transformer.checkpoint import save_model
from selfimprove.nn.transformer.family import family_of
from selfimprove.nn.transformer.gates import heads_per_layer
from selfimprove.plasticity._adaptation import (
    GROWTH_PRIORS,
    MAX_PRUNING_LEVEL,
    PRUNING_PRIORS,
    StrategyRatings,
    TransformationMemory,
)
from selfimprove.plasticity._config import (
    CycleOutcome,
    PlasticityConfig,
    PlasticityResults,
    Progress,
    load_results,
)
from selfimprove.plasticity._cycle import run_cycle
from selfimprove.plasticity._cycle_state import RunContext, RunState
from selfimprove.plasticity._ledger import PlasticityLedger
from selfimprove.plasticity._metrics import MetricsLog
from selfimprove.plasticity._slots import SlotBook
from selfimprove.plasticity._workbench import Workbench, load_workbench, snapshot
from selfimprove.store import Store, clean_json
from selfimprove.tasks.corpus import Corpus
from selfimprove.tasks.language import TINY_NAME

if TYPE_CHECKING:
    from collections.abc import Iterator

    from transformers import GPT2LMHeadModel

__all__ = [
    "AdaptivePlasticitySystem",
    "CycleOutcome",
    "PlasticityConfig",
    "PlasticityResults",
    "load_results",
]

logger = logging.getLogger(__name__)


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


def _check_run_arguments(
    max_cycles: int, initial_pruning_level: float, initial_growth_ratio: float
) -> None:
    """Raise :class:`ConfigError` for a bad argument of ``run_adaptive_optimization``."""
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


class AdaptivePlasticitySystem:
    """Prune -> measure -> grow -> learn cycles on a GPT-2-family model (seed 004's API).

    The constructor stores its arguments; the model and data are loaded by :meth:`setup`
    (called by :meth:`run_adaptive_optimization`). After a run, ``model_`` is the final model,
    ``results_`` the results.

    Args:
        model_name: ``"tiny"`` (pre-trained on the training split of ``dataset``, once per
            machine: see :func:`load_tiny`), or a GPT-2 model name or folder available offline.
        dataset: ``None`` / ``"pydoc"`` (built-in), a text-file path, an offline Hugging Face
            dataset name, or a :class:`Corpus`.
        output_dir: Where ``run_YYYYmmdd-HHMMSS/`` folders are made.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        verbose: Log each phase at INFO (else DEBUG).
        config: Everything else (:class:`PlasticityConfig`).
        home: Home folder (the memory of transformations; ``tiny`` where the machine-wide
            cache cannot be written).
        progress: Callback for progress events (the CLI draws its bars from it).
        store: The ledger the run's cycles are recorded in (used, not closed). ``None``: the
            home's store is opened for the run (``$SELFIMPROVE_DB`` if set, else
            ``selfimprove.db`` in the home folder) and closed after it.

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
        store: Store | None = None,
    ) -> None:
        self.model_name = model_name
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.device = device
        self.verbose = verbose
        self.config = config or PlasticityConfig()
        self.home = home
        self.progress = progress
        self.store = store
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
        bench, model = load_workbench(
            self.model_name,
            self.dataset,
            self.device,
            self.config,
            home=self.home,
            emit=self._emit,
        )
        self.bench_: Workbench = bench
        self.device_ = bench.device
        self.corpus_ = bench.corpus
        self.tokenizer_ = bench.tokenizer
        self.data_ = bench.data
        self.context_ = bench.context
        self.degeneration_ = bench.degeneration_config
        self.val_ = bench.val
        self.test_ = bench.test
        self.model_: GPT2LMHeadModel = model
        self._ready = True
        return self

    @contextmanager
    def _ledger_store(self) -> Iterator[Store]:
        """The store given, or the home's store opened for the run and closed after it."""
        if self.store is not None:
            yield self.store
            return
        store = Store(home=resolve_home(self.home))
        try:
            yield store
        finally:
            store.close()

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
            The results (also written to ``summary.json``; every cycle is an experiment in
            the store).

        Raises:
            ConfigError: A bad argument, device, or data.
            NotFoundError: Model or dataset not available offline.
            CheckpointError: A checkpoint failed its sha256 check when restoring.
            DivergedError: Fine-tuning produced NaN.
            StoreError: The store cannot be written.
        """
        _check_run_arguments(max_cycles, initial_pruning_level, initial_growth_ratio)
        self.setup()
        with self._ledger_store() as store:
            ctx, state = self._begin(store, max_cycles, initial_pruning_level, initial_growth_ratio)
            stopped = "max_cycles"
            for cycle in range(1, max_cycles + 1):
                if run_cycle(ctx, state, cycle) is None:
                    stopped = "no_head_left_to_remove"
                    break
            return self._finish(ctx, state, stopped)

    def _begin(
        self, store: Store, max_cycles: int, level: float, ratio: float
    ) -> tuple[RunContext, RunState]:
        """Make the run folder, measure and save the start, record it in the store."""
        cfg, bench = self.config, self.bench_
        run_dir = _new_run_dir(self.output_dir)
        log = MetricsLog(run_dir)
        atomic_write_json(
            run_dir / "config.json",
            clean_json(
                {
                    "model_name": self.model_name,
                    "dataset": bench.corpus.name,
                    "corpus_sha256": bench.corpus.fingerprint,
                    "device": str(bench.device),
                    "max_cycles": max_cycles,
                    "initial_pruning_level": level,
                    "initial_growth_ratio": ratio,
                    "context": bench.context,
                    "config": cfg.to_dict(),
                    "torch": torch.__version__,
                }
            ),
        )
        memory = TransformationMemory(
            resolve_home(self.home) / "plasticity" / "memory.json" if cfg.use_memory else None
        )
        original = self.model_
        original_heads = heads_per_layer(original)
        saved = save_model(original, run_dir / "checkpoints" / "cycle_000", extra={"cycle": 0})
        start = self._measure_start(original, saved.sha256)
        log.write(0, "baseline", {**start, "slots": [list(range(h)) for h in original_heads]})
        ledger = PlasticityLedger.open(
            store,
            model_name=self.model_name,
            dataset=bench.corpus.name,
            run_dir=run_dir,
            start=start,
            saved=saved,
            family=family_of(original).name,
        )
        ctx = RunContext(
            bench=bench,
            config=cfg,
            log=log,
            ledger=ledger,
            memory=memory,
            pruning=StrategyRatings(PRUNING_PRIORS),
            growth=StrategyRatings(GROWTH_PRIORS),
            run_dir=run_dir,
            # Memories belong to one starting model: its name and the digest of its weights.
            model_key=f"{self.model_name}@{saved.sha256[:16]}",
            original_heads=original_heads,
            start=start,
            max_cycles=max_cycles,
            emit=self._emit,
            verbose=self.verbose,
        )
        state = RunState(
            model=original,
            perplexity=start["perplexity"],
            saved=saved,
            book=SlotBook.fresh(original_heads),
            level=level,
            ratio=ratio,
        )
        return ctx, state

    def _measure_start(self, original: GPT2LMHeadModel, sha256: str) -> dict[str, Any]:
        """Heads, parameters, perplexities, degeneration and latency of the starting model."""
        cfg, bench = self.config, self.bench_
        start_ppl = bench.perplexity(original)
        start_deg = bench.degeneration(original)
        ((start_latency, start_serving),) = bench.latency(original)
        start = {
            **snapshot(original),
            "perplexity": start_ppl,
            "test_perplexity": bench.perplexity(original, "test"),
            "degeneration": start_deg.score,
            "degeneration_report": start_deg.to_dict(),
            "latency_ms": start_latency,
            "serving_latency_ms": start_serving,
            "serving_batch": cfg.serving_batch,
            "sha256": sha256,
        }
        self._log(
            "start: %d heads, %d parameters, perplexity %.3f, degeneration %.3f",
            start["heads"],
            start["parameters"],
            start_ppl,
            start_deg.score,
        )
        return start

    def _measure_final(self, ctx: RunContext, state: RunState) -> dict[str, Any]:
        """The final model's figures, latency timed interleaved with the start."""
        cfg, bench, start = self.config, self.bench_, ctx.start
        current, original = state.model, self.model_
        (lat_start, serving_start), (lat_final, serving_final) = bench.latency(
            original, current, repeats=cfg.latency_repeats * 2
        )
        final_snap = snapshot(current)
        final_ppl, start_ppl = state.perplexity, ctx.start_perplexity
        final_deg = bench.degeneration(current).score if state.outcomes else start["degeneration"]
        return {
            **final_snap,
            "perplexity": final_ppl,
            "test_perplexity": bench.perplexity(current, "test"),
            "degeneration": final_deg,
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
            "accepted_cycles": sum(o.accepted for o in state.outcomes),
            "sha256": state.saved.sha256,
        }

    def _measure_reference(
        self, original: GPT2LMHeadModel, state: RunState, final_ppl: float, cycles: int
    ) -> dict[str, Any] | None:
        """The unpruned start fine-tuned with the kept cycles' steps, seeds and rates, or
        ``None``: the run's own reference track when it kept one, else replayed here."""
        cfg, bench, plan = self.config, self.bench_, state.reference_plan
        if not (cfg.measure_reference and plan):
            return None
        if state.reference is not None and state.reference.seeds == [s for s, _ in plan]:
            ref_model = state.reference.model
        else:
            ref_model = copy.deepcopy(original)
            for s, c in plan:
                ft = cfg.finetune_config(bench.context, cycle=c, cycles=cycles)
                finetune_(ref_model, bench.data, ft, seed=s)
        ref_model.eval()
        ref_ppl = bench.perplexity(ref_model)
        return {
            "what": "the unpruned start fine-tuned with the same steps, seeds and rates",
            "finetune_steps": cfg.finetune_steps * len(plan),
            "perplexity": ref_ppl,
            "test_perplexity": bench.perplexity(ref_model, "test"),
            "final_vs_reference": final_ppl / ref_ppl,
        }

    def _finish(self, ctx: RunContext, state: RunState, stopped: str) -> PlasticityResults:
        """Measure the end, write the summary, memory and dashboard, record the reference."""
        cfg, run_dir, start = self.config, ctx.run_dir, ctx.start
        self._emit("phase", cycle=len(state.outcomes), phase="final", max_cycles=ctx.max_cycles)
        original = self.model_
        final = self._measure_final(ctx, state)
        self.model_ = state.model
        reference = self._measure_reference(original, state, final["perplexity"], ctx.max_cycles)
        ctx.log.write(0, "final", {**final, "reference": reference, "stopped": stopped})
        ctx.ledger.finish(reference)
        atomic_write_json(
            run_dir / "memory.json",
            clean_json({"transformations": [asdict(t) for t in ctx.memory.items]}),
        )
        results = PlasticityResults(
            run_dir=run_dir,
            model_name=self.model_name,
            dataset=ctx.bench.corpus.name,
            start={k: v for k, v in start.items() if k != "degeneration_report"},
            final=final,
            reference=reference,
            cycles=state.outcomes,
            ratings={"pruning": ctx.pruning.to_dict(), "growth": ctx.growth.to_dict()},
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
            start["perplexity"],
            final["perplexity"],
            final["latency_ratio"],
            final["serving_latency_ratio"],
            cfg.serving_batch,
        )
        return results
