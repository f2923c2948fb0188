"""What every benchmark runner shares: the record (JSON), the tasks, the search space, the trial
trainer the peers use, scoring, latency, statistics and hypervolume.

A run writes one JSON file (``results/<benchmark>.<mode>.json``) with the command, the versions
(Python, torch, Optuna, Ray, transformers, selfimprove and its git commit), the machine (CPU count
and model, load average at start and end), the seeds, the budgets, every figure, the targets of
the issue with met / not met, and what was not run with the exact reason. ``report.py`` turns all
the JSON files into ``RESULTS.md``; nothing in it is typed by hand.

Protocol (``../shared/BENCHMARKS.md``): one search space for everyone, budgets in total training
epochs (pruned trials count what they ran) and wall time with the same threads (one torch thread
everywhere, set by :func:`setup`), the same early stopping (``selfimprove.measure.training.train_``:
patience on a holdout carved from the training split), winners chosen on validation and the test
split scored once per winner.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.measure.evaluation import Evaluator
from selfimprove.measure.training import TrainConfig, TrainResult, train_
from selfimprove.objectives import Objective
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.tasks import (
    MLP_SPACE,
    CategoricalParam,
    FloatParam,
    SearchSpace,
    SupervisedTask,
    Task,
    build_mlp,
)
from selfimprove.tasks.builtin import neural_sort, pattern_recognition

__all__ = [
    "BENCH_DIR",
    "JOINT_SPACE",
    "MODES",
    "REPO_ROOT",
    "RESULTS_DIR",
    "SCHEMA",
    "SCRATCH_DIR",
    "TRAINING_KEYS",
    "BenchTask",
    "Record",
    "TrialOutcome",
    "arch_of",
    "bench_task",
    "describe_space",
    "error_of",
    "hypervolume_2d",
    "latency_profiles",
    "log",
    "machine_info",
    "paired_summary",
    "pareto_front",
    "run_trial",
    "score",
    "setup",
    "spread",
    "time_rotated",
    "versions",
    "weak_start",
]

#: Version of the JSON layout (``report.py`` refuses other versions).
SCHEMA = "selfimprove-bench/1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
#: Scratch space (homes of engine runs, Ray's files, the cached tiny GPT-2); ``/bench-out/`` is
#: ignored by git.
SCRATCH_DIR = REPO_ROOT / "bench-out"
#: ``full``: the protocol (>= 5 seeds); ``quick``: reduced, labelled quick; ``smoke``: tiny
#: configurations for the test suite (never written to ``results/``).
MODES = ("full", "quick", "smoke")

log = logging.getLogger("benchmarks")


def runner_args(
    module: str,
    doc: str | None,
    argv: Sequence[str] | None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[argparse.Namespace, list[str]]:
    """Parse a runner's command line (``--mode``, ``--out``, ``--work``, ``--verbose`` and any
    ``add_arguments`` adds), set up logging, and return the arguments and the command to
    record in the JSON."""
    parser = argparse.ArgumentParser(description=(doc or module).split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, default="quick")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--work", type=Path, default=SCRATCH_DIR / "work")
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--verbose", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    setup(args.verbose)
    return args, [module, *argv]


def setup(verbose: bool = False) -> None:
    """One torch thread (the protocol), progress logging to stderr, library chatter quiet."""
    torch.set_num_threads(1)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    logging.getLogger("selfimprove").setLevel(logging.WARNING)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover - optuna is a dependency of the benchmarks
        pass


# ---------------------------------------------------------------------- environment
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """Read-only git query in the repository (``None`` if git or the repository is missing)."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def versions() -> dict[str, Any]:
    """Versions of Python, the libraries compared, and selfimprove (with its git commit)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "optuna": _version("optuna"),
        "ray": _version("ray"),
        "flaml": _version("flaml"),
        "transformers": _version("transformers"),
        "scikit-learn": _version("scikit-learn"),
        "selfimprove": _version("selfimprove"),
        "selfimprove_commit": _git("rev-parse", "HEAD"),
        "selfimprove_tracked_changes": None if status is None else bool(status),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU count and model, platform, and the load average now (1, 5, 15 minutes)."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "load_average": _load(),
    }


# ---------------------------------------------------------------------- the record
@dataclass
class Record:
    """One benchmark run, written as one JSON file.

    Args:
        benchmark: Short name (the file is ``<benchmark>.<mode>.json``).
        section: Number of the comparison in the issue (1-6); tables and targets go there
            unless they name another section.
        title: What it compares, in words.
        mode: One of :data:`MODES`.
        argv: The command's arguments (recorded as the command).
    """

    benchmark: str
    section: int
    title: str
    mode: str
    argv: Sequence[str]
    seeds: list[int] = field(default_factory=list)
    budgets: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    tables: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    not_run: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, but got {self.mode!r}.")
        self._t0 = time.perf_counter()
        self._started = _dt.datetime.now(_dt.timezone.utc)
        self._machine = machine_info()
        log.info(
            "%s (%s): load average %s", self.benchmark, self.mode, self._machine["load_average"]
        )

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        note: str = "",
        *,
        section: int | None = None,
    ) -> None:
        """Add a table (rendered as is by ``report.py``; every cell comes from ``results``)."""
        self.tables.append(
            {
                "section": section or self.section,
                "title": title,
                "columns": list(columns),
                "rows": [list(r) for r in rows],
                "note": note,
            }
        )

    def target(
        self,
        target: str,
        measured: str,
        met: bool | None,
        why: str = "",
        *,
        section: int | None = None,
    ) -> None:
        """Record one target of the issue: met (``True``), not met (``False``) or not measured
        (``None``), with the measured figure and, where it is not met, why."""
        self.targets.append(
            {
                "section": section or self.section,
                "target": target,
                "measured": measured,
                "met": met,
                "why": why,
            }
        )

    def skip(self, what: str, reason: str, *, section: int | None = None) -> None:
        """Record something not run, with the exact reason."""
        log.info("not run: %s (%s)", what, reason)
        self.not_run.append({"section": section or self.section, "what": what, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload."""
        machine = dict(self._machine)
        machine["load_average_start"] = machine.pop("load_average")
        machine["load_average_end"] = _load()
        return _clean(
            {
                "schema": SCHEMA,
                "benchmark": self.benchmark,
                "section": self.section,
                "title": self.title,
                "mode": self.mode,
                "command": " ".join([Path(sys.executable).name, "-m", *self.argv]),
                "started_at": self._started.isoformat(timespec="seconds"),
                "wall_seconds": round(time.perf_counter() - self._t0, 2),
                "versions": versions(),
                "machine": machine,
                "seeds": self.seeds,
                "budgets": self.budgets,
                "settings": self.settings,
                "results": self.results,
                "tables": self.tables,
                "targets": self.targets,
                "not_run": self.not_run,
                "notes": self.notes,
            }
        )

    def write(self, out_dir: Path) -> Path:
        """Write ``<out_dir>/<benchmark>.<mode>.json`` (atomically) and return its path."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.benchmark}.{self.mode}.json"
        write_json(path, self.to_dict())
        log.info("wrote %s (%.0f s)", path, time.perf_counter() - self._t0)
        return path


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a results file atomically (temp file, then rename)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become ``None`` / strings, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


# ---------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class BenchTask:
    """A task as the benchmarks use it.

    Attributes:
        key: Short name (``digits``, ``neural_sort``, ``diabetes``, ``tiny_gpt2``).
        task: The task (splits fixed by its ``data_seed``).
        initial_params: Architecture of the engine's weak start.
        initial_training: ``TrainConfig`` fields that train the weak start.
        description: What it is, in words.
    """

    key: str
    task: Task
    initial_params: dict[str, Any]
    initial_training: dict[str, Any]
    description: str

    @property
    def primary(self) -> Objective:
        """The task's primary objective."""
        return self.task.primary


def _digits() -> BenchTask:
    base = pattern_recognition()
    task = SupervisedTask(
        "bench_digits",
        kind="classification",
        splits=base.splits(),
        build=lambda p: build_mlp(64, 10, p),
        default_params=base.default_params(),
        initial_params=base.initial_params(),
        initial_training=base.initial_training(),
        target=1.0,
        family="image_classification",
        search_space=MLP_SPACE,
    )
    return BenchTask(
        "digits",
        task,
        base.initial_params(),
        base.initial_training(),
        "scikit-learn digits (8x8, 10 classes), the built-in pattern_recognition split and weak "
        "start (width 16, 2 epochs); accuracy",
    )


def _neural_sort() -> BenchTask:
    base = neural_sort()
    task = SupervisedTask(
        "bench_neural_sort",
        kind="regression",
        splits=base.splits(),
        build=lambda p: build_mlp(6, 6, p),
        default_params=base.default_params(),
        initial_params=base.initial_params(),
        initial_training=base.initial_training(),
        target=1e-6,
        family="neural_alternative",
        search_space=MLP_SPACE,
    )
    return BenchTask(
        "neural_sort",
        task,
        base.initial_params(),
        base.initial_training(),
        "neural alternative to numpy.sort (6 numbers), the built-in neural_sort split and weak "
        "start (width 32 x 2, 2 epochs); mean squared error",
    )


def _diabetes() -> BenchTask:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = (y - y.mean()) / y.std()  # standardised: an MSE of 1.0 is the mean predictor's
    initial = {"width": 16, "depth": 1, "activation": "relu", "dropout": 0.0}
    training = {"epochs": 2, "lr": 3e-3}
    task = SupervisedTask.regression(
        "bench_diabetes",
        x.astype(np.float32),
        y.astype(np.float32),
        build=lambda p: build_mlp(10, 1, p),
        default_params={"width": 64, "depth": 2, "activation": "relu", "dropout": 0.0},
        initial_params=initial,
        initial_training=training,
        target=1e-6,
        family="tabular_regression",
        search_space=MLP_SPACE,
    )
    return BenchTask(
        "diabetes",
        task,
        initial,
        training,
        "scikit-learn diabetes (442 patients, 10 features, standardised target), split 60/20/20 "
        "seed 0, weak start width 16, 2 epochs; mean squared error",
    )


def _tiny_gpt2(train_windows: int, eval_windows: int) -> BenchTask:
    from selfimprove.plasticity import LanguageModelTask

    task = LanguageModelTask(
        "bench_tiny_gpt2", context=64, max_windows=(train_windows, eval_windows, eval_windows)
    )
    # The planner needs a target: 1.7 nats (perplexity 5.5) is out of reach at these budgets
    # (tiny, pre-trained on twice the tokens of the full budget, reaches 1.83), yet a weak start
    # below 3.4 nats is within the "training" gap (error < 2 x target), so the engine trains
    # rather than asking for an architecture search the language-model task does not offer.
    task.objectives = (replace(task.objectives[0], target=1.7), *task.objectives[1:])
    params = task.default_params()
    return BenchTask(
        "tiny_gpt2",
        task,
        params,
        dict(task.initial_training()),
        f"tiny GPT-2 (4 layers x 8 heads, 128 dims, byte-level) on the built-in pydoc corpus, "
        f"context 64, {train_windows} training windows, {eval_windows} validation and test "
        "windows; mean next-token loss (nats)",
    )


_TASKS: dict[str, Callable[[], BenchTask]] = {
    "digits": _digits,
    "neural_sort": _neural_sort,
    "diabetes": _diabetes,
}
_cache: dict[str, BenchTask] = {}


def bench_task(key: str, *, lm_train_windows: int = 512, lm_eval_windows: int = 128) -> BenchTask:
    """The benchmark task called ``key`` (built once per process).

    The supervised tasks keep the built-in data, splits and weak starts, under their own names
    and with a target out of reach, so the engine, like its peers, spends the whole budget
    instead of stopping at the built-in target.
    """
    cache_key = key if key != "tiny_gpt2" else f"{key}:{lm_train_windows}:{lm_eval_windows}"
    if cache_key not in _cache:
        if key == "tiny_gpt2":
            _cache[cache_key] = _tiny_gpt2(lm_train_windows, lm_eval_windows)
        elif key in _TASKS:
            _cache[cache_key] = _TASKS[key]()
        else:
            raise ValueError(
                f"unknown benchmark task {key!r}; use one of {[*_TASKS, 'tiny_gpt2']}."
            )
    return _cache[cache_key]


def weak_start(bt: BenchTask, seed: int) -> tuple[nn.Module, TrainResult]:
    """The engine's weak starting model for ``bt``, seeded."""
    s = derive_seed("bench", "weak_start", bt.key, seed)
    with torch_seeded(s):
        module = bt.task.build(bt.initial_params)
    result = train_(module, bt.task, TrainConfig(seed=s, **bt.initial_training))
    return module, result


# ---------------------------------------------------------------------- search space
#: The one space everyone searches: the architecture space of the built-in MLPs (width 8-512
#: log, depth 1-4, activation, dropout 0-0.5) and the training space of ``tune`` (lr 1e-4-1e-1
#: log, weight decay 1e-6-1e-2 log, batch size, schedule).
JOINT_SPACE: SearchSpace = {
    **MLP_SPACE,
    "lr": FloatParam(1e-4, 1e-1, log=True),
    "weight_decay": FloatParam(1e-6, 1e-2, log=True),
    "batch_size": CategoricalParam((32, 64, 128)),
    "schedule": CategoricalParam(("plateau", "cosine")),
}
#: The part of :data:`JOINT_SPACE` that is training, not architecture.
TRAINING_KEYS = ("lr", "weight_decay", "batch_size", "schedule")


def describe_space(space: Mapping[str, Any]) -> dict[str, str]:
    """A readable form of a search space, for the record."""
    return {name: repr(param) for name, param in space.items()}


# ---------------------------------------------------------------------- scoring
def error_of(objective: Objective, value: float) -> float:
    """The error-like form of a value (``1 - accuracy``, the MSE, the loss)."""
    return objective.error(value)


@torch.inference_mode()
def score(module: nn.Module, task: Task, split: str) -> float:
    """The mean of the task's primary objective on ``split`` (the product's evaluator)."""
    scores = Evaluator().scores(module, task, split)
    return scores.value(task.primary.name)


@torch.inference_mode()
def time_rotated(
    modules: Sequence[nn.Module],
    inputs: Sequence[Any],
    *,
    repeats: int,
    call: Callable[[nn.Module, Any], Any] = lambda m, x: m(x),
) -> list[list[float]]:
    """Median call time (ms) of every module on every input, timed side by side.

    One thread, three warm-up calls each, then ``repeats`` rounds; in every round each model is
    called once untimed and then timed on each input (its weights are in cache, as when it
    serves), and the order of the models rotates from round to round. Why not the product's
    ``Evaluator.latency``: it times models in a fixed order, and a model timed right after a
    larger one runs with a cold cache (measured here: an MLP timed after a 512x2 one read about
    25 % slower than an identical one timed after it).

    Returns:
        ``[model][input]`` medians in milliseconds.
    """
    for m in modules:
        m.eval()
    times: list[list[list[float]]] = [[[] for _ in inputs] for _ in modules]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for m in modules:
            for _ in range(3):
                for x in inputs:
                    call(m, x)
        n = len(modules)
        for r in range(repeats):
            for k in range(n):
                i = (k + r) % n
                m = modules[i]
                for j, x in enumerate(inputs):
                    call(m, x)
                    t0 = time.perf_counter()
                    call(m, x)
                    times[i][j].append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(before)
    return [[float(np.median(t)) for t in per_model] for per_model in times]


def latency_profiles(
    modules: Sequence[nn.Module], task: Task, *, repeats: int, serving_batch: int = 64
) -> list[dict[str, float]]:
    """Median batch-1 and serving-batch latency (ms) of ``modules`` (see :func:`time_rotated`),
    on real validation inputs of ``task``."""
    x1, xs = task.example_input(1), task.example_input(serving_batch)
    return [
        {"batch1_ms": b1, "serving_ms": bs, "serving_batch": serving_batch}
        for b1, bs in time_rotated(modules, [x1, xs], repeats=repeats)
    ]


# ---------------------------------------------------------------------- one peer trial
@dataclass(frozen=True)
class TrialOutcome:
    """One trial of a peer: the epochs it spent and how it ended."""

    epochs: int
    state: str  # "complete", "pruned" or "failed"
    validation: float  # primary objective on validation (NaN unless complete)
    reason: str = ""


class _Stop(Exception):
    """Raised from a per-epoch hook to end a trial early (pruning)."""


def run_trial(
    module: nn.Module,
    task: Task,
    params: Mapping[str, Any],
    *,
    epochs: int,
    seed: int,
    report: Callable[[int, float], bool] | None = None,
    optimizer: str = "adamw",
    patience: int = 5,
) -> TrialOutcome:
    """Train ``module`` (in place) as a peer's trial, with the engine's own training loop.

    ``selfimprove.measure.training.train_``: early stopping with patience on a holdout carved
    from the training split, plateau or cosine schedule, clipping, NaN guard. After every epoch
    ``report(epoch, validation error)`` is called; it returns ``True`` to prune the trial.

    Args:
        module: The trial's model.
        task: The task.
        params: The trial's params (the training keys of :data:`JOINT_SPACE` are read).
        epochs: Epoch cap of the trial.
        seed: Seeds batches, dropout and the early-stopping holdout.
        report: Called after each epoch; ``True`` prunes.
        optimizer: ``adamw`` (the optimizer ``tune`` uses, with decoupled weight decay).
        patience: Early-stopping patience.

    Returns:
        Epochs spent (a pruned trial counts what it ran) and the final validation value.
    """
    done = 0
    primary = task.primary

    def on_epoch(row: dict[str, float]) -> None:
        nonlocal done
        done = int(row["epoch"])
        if report is not None:
            err = error_of(primary, score(module, task, "validation"))
            if report(done, err if math.isfinite(err) else math.inf):
                raise _Stop(f"pruned at epoch {done}")

    config = TrainConfig(
        epochs=epochs,
        lr=float(params.get("lr", 1e-3)),
        weight_decay=float(params.get("weight_decay", 0.0)),
        batch_size=int(params.get("batch_size", 64)),
        schedule=str(params.get("schedule", "plateau")),
        optimizer=optimizer,
        patience=patience,
        seed=seed,
    )
    try:
        result = train_(module, task, config, on_epoch=on_epoch)
    except _Stop as exc:
        return TrialOutcome(done, "pruned", math.nan, str(exc))
    except Exception as exc:  # DivergedError and friends: the trial failed, its epochs count
        return TrialOutcome(max(done, 1), "failed", math.nan, f"{type(exc).__name__}: {exc}")
    value = score(module, task, "validation")
    if not math.isfinite(value):
        return TrialOutcome(result.epochs_run, "failed", math.nan, "validation not finite")
    return TrialOutcome(result.epochs_run, "complete", value)


def arch_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture part of a joint-space sample."""
    return {k: v for k, v in params.items() if k not in TRAINING_KEYS}


# ---------------------------------------------------------------------- statistics
def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves (NaN dropped; ``None`` when empty)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": list(values)}
    return {
        "median": float(np.median(vals)),
        "min": float(min(vals)),
        "max": float(max(vals)),
        "n": len(vals),
        "values": [float(v) for v in values],
    }


def paired_summary(
    ours: Sequence[float], theirs: Sequence[float], objective: Objective
) -> dict[str, Any]:
    """Seed-paired comparison of final values (same seed, same position).

    Returns the per-seed error ratios (ours / theirs; < 1 is better for us), their median,
    wins / ties / losses, and a one-sided Wilcoxon signed-rank p-value (``None`` below 5 pairs).
    """
    ratios, diffs = [], []
    wins = ties = losses = 0
    for a, b in zip(ours, theirs, strict=True):
        ea, eb = error_of(objective, a), error_of(objective, b)
        if not (math.isfinite(ea) and math.isfinite(eb)):
            continue
        ratios.append(ea / eb if eb > 0 else (1.0 if ea == 0 else math.inf))
        diffs.append(eb - ea)
        if abs(ea - eb) <= 1e-12:
            ties += 1
        elif ea < eb:
            wins += 1
        else:
            losses += 1
    p = None
    if len(diffs) >= 5 and any(d != 0 for d in diffs):
        from scipy import stats

        p = float(stats.wilcoxon(diffs, alternative="greater").pvalue)
    return {
        "error_ratio": spread(ratios),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "wilcoxon_p_ours_better": p,
    }


# ---------------------------------------------------------------------- Pareto and hypervolume
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (both coordinates minimised)."""
    front = []
    for i, (a1, a2) in enumerate(points):
        dominated = any(
            (b1 <= a1 and b2 <= a2) and (b1 < a1 or b2 < a2)
            for j, (b1, b2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def hypervolume_2d(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` and bounded by ``ref`` (both coordinates minimised).

    Points not strictly better than ``ref`` in both coordinates add nothing.
    """
    pts = sorted({(a, b) for a, b in points if a < ref[0] and b < ref[1]})
    area, best2 = 0.0, ref[1]
    for a, b in pts:  # ascending in the first coordinate
        if b < best2:
            area += (ref[0] - a) * (best2 - b)
            best2 = b
    return area
