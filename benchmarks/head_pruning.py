"""Comparison 3: head pruning on the tiny GPT-2. Perplexity increase at 20 / 40 / 60 / 80 % of the
heads removed for random, magnitude, gradient (Michel et al. 2019) and the adaptive cycles of
``selfimprove.plasticity``, each at equal fine-tuning budget; parameters and measured latency.
The same protocol runs on two corpora: the built-in ``pydoc`` text (the one the benchmark was
tuned on) and ``stdlib-docstrings``, which it never tuned on (see :func:`stdlib_docstrings`).

The model is ``tiny`` (4 layers x 8 heads, 128 dims, byte-level) exactly as
``AdaptivePlasticitySystem`` loads it for the corpus (``system.setup()``; pre-trained on the
corpus's training split where ``selfimprove.plasticity`` does so; cached in ``--cache``), so the
fixed methods, the reference and the adaptive arms start from one model. The reference is always
the *unpruned* model fine-tuned for the same steps with the same batches (extra training alone
lowers perplexity).

- **random / magnitude / gradient**: ``prune_iteratively`` (steps of at most 10 % of the heads,
  re-scored after each, every layer keeps a head; importance on training windows only), then
  ``finetune_`` for ``steps`` steps. Gradient is Michel et al.'s ``E|dL/d xi_h|`` with per-layer
  normalisation; random and magnitude run through the same machinery.
- **adaptive**: ``AdaptivePlasticitySystem.run_adaptive_optimization`` with the product's
  defaults but growth (prune -> measure -> learn cycles, estimators screened on probe training
  windows, no head grown: ``initial_growth_ratio=0``, see below; each cycle kept only if
  perplexity stays
  within 5 % of the start *and* of the unpruned start fine-tuned the same steps on the same
  batches, the level searched for the largest removal within that tolerance, the cycles after
  the search is resolved only learn and are kept when they lower perplexity), ``cycles`` cycles
  of ``steps / cycles`` fine-tuning steps each: the same total (rejected cycles spend theirs
  too), at the same peak learning rate as the reference and the fixed methods (the product's
  default, 3e-4), the cycles sharing one warm-up and cosine decay over the run as a single
  fine-tuning does (``lr_schedule="run"``; each cycle's fresh optimiser warms up briefly).
  The reference the cycles are judged against costs the adaptive arm up to ``steps`` more
  fine-tuning steps of the unpruned model (recorded). It decides how many heads go; its point is
  compared with the fixed methods interpolated at the fraction it reached. The memory of
  transformations across runs is off (every run starts from the same knowledge, so seeds are
  comparable).
- **adaptive, growth ablation**: the same run with the other growth setting (growth ratio 0.5,
  the product's default, where the adaptive arm grows none, and the reverse), so whether grown
  heads pay is measured at equal steps, seed by seed. Growth is off in the adaptive arm because
  it did not pay where it was measured: in a full-scale run of pydoc seed 0 (6 cycles of 50
  steps), growth 0.5 ended at 50 % removed, +4.1 % against the 300-step reference, 0.4 points
  above the best fixed method there; growth 0 at 62 %, +4.9 %, 0.3 points below (grown heads
  pay back only what they take from the search: a cycle that prunes 6 heads and keeps 1 grown
  one has removed 5), and in the quick run 3 of 8 grown heads paid.

Perplexity on ``eval_windows`` validation windows (test reported beside it); latency timed side
by side (one thread, rotated order, warm calls, median) at batch 1 and at batch 8 of
``context`` tokens.

Run: ``python -m benchmarks.head_pruning --mode quick`` (or ``full``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import itertools
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import (
    MODES,
    SCRATCH_DIR,
    Record,
    log,
    runner_args,
    spread,
    time_rotated,
)
from selfimprove.seeding import derive_seed

__all__ = ["CORPORA", "FIXED", "LEVELS", "Config", "main", "run", "stdlib_docstrings"]

FIXED = ("random", "magnitude", "gradient")
#: Fractions of the heads the fixed methods remove (up to 80 %: the adaptive arm went beyond 60 %,
#: and a fixed method compared at its 60 % figure there would be flattered).
LEVELS = (0.2, 0.4, 0.6, 0.8)
#: The corpora, in report order: the one the benchmark was tuned on, then one it never saw.
CORPORA = ("pydoc", "stdlib-docstrings")
#: Where the second corpus is written (a folder's split is seeded by its name, so the split
#: never changes; see :func:`stdlib_docstrings`).
CORPUS_FOLDER = Path(tempfile.gettempdir()) / "selfimprove-bench-corpora" / "stdlib-docstrings"
#: Pure-Python standard-library modules (nothing happens on import) whose docstrings make the
#: second corpus: one document per module.
STDLIB_MODULES = (
    "abc", "argparse", "ast", "base64", "bisect", "calendar", "cmd", "code", "codecs",
    "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "dis", "email.message", "email.utils", "enum", "filecmp",
    "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob",
    "graphlib", "gzip", "hashlib", "heapq", "hmac", "html", "html.parser", "http.client",
    "http.cookies", "imaplib", "inspect", "ipaddress", "json", "json.decoder", "json.encoder",
    "logging", "logging.handlers", "lzma", "mailbox", "mimetypes", "numbers", "operator",
    "optparse", "os", "pathlib", "pickle", "pickletools", "platform", "plistlib", "poplib",
    "pprint", "profile", "pstats", "queue", "quopri", "random", "re", "reprlib", "sched",
    "secrets", "selectors", "shelve", "shlex", "shutil", "smtplib", "socket", "socketserver",
    "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing",
    "unittest.case", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref",
    "xml.dom.minidom", "xml.etree.ElementTree", "zipfile", "zipimport",
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    """What one run does.

    Attributes:
        mode: ``full``, ``quick`` or ``smoke``.
        seeds: Seeds (batches, random importance, fine-tuning).
        steps: Fine-tuning steps per method and level (and of the reference).
        batch_size: Windows per fine-tuning step.
        context: Tokens per window.
        lr: Fine-tuning peak learning rate, of every method and of the reference: the
            product's default (``selfimprove.plasticity.FINETUNE_LR``), so the adaptive cycles and
            the fixed methods fine-tune with one recipe.
        eval_windows: Validation / test windows for perplexity.
        importance_batches: Batches of training windows per importance estimate.
        importance_batch_size: Windows per importance batch.
        cycles: Adaptive cycles (each fine-tunes ``steps / cycles`` steps).
        latency_repeats: Timed repeats per model.
        tiny: ``TinySpec`` overrides (empty: the real ``tiny``).
        degeneration_prompts: Prompts of the adaptive system's degeneration check.
        degeneration_tokens: Tokens generated per prompt.
        corpora: Corpora to run, of :data:`CORPORA`.
        initial_level: The adaptive run's first level (the product's default, 0.2).
        growth_ratio: The adaptive run's initial growth ratio (0: growth measured not to pay;
            the product's default is 0.5).
        growth_ablation: Also run the adaptive system with the other growth setting.
    """

    mode: str
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    context: int
    lr: float
    eval_windows: int
    importance_batches: int
    importance_batch_size: int
    cycles: int
    latency_repeats: int
    tiny: dict[str, Any] = field(default_factory=dict)
    degeneration_prompts: int = 8
    degeneration_tokens: int = 96
    corpora: tuple[str, ...] = CORPORA
    initial_level: float = 0.2
    growth_ratio: float = 0.0
    growth_ablation: bool = True

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        if mode == "full":
            return cls(mode, (0, 1, 2, 3, 4), 300, 8, 128, 3e-4, 64, 4, 16, 6, 20)
        if mode == "quick":
            return cls(
                mode,
                (0,),
                30,
                8,
                128,
                3e-4,
                24,
                2,
                8,
                3,
                20,
                degeneration_prompts=4,
                degeneration_tokens=48,
            )
        if mode == "smoke":
            tiny = {
                "n_layer": 2,
                "n_head": 4,
                "n_embd": 32,
                "context": 32,
                "steps": 3,
                "batch_size": 4,
            }
            return cls(
                mode,
                (0,),
                2,
                2,
                32,
                3e-4,
                4,
                1,
                2,
                1,
                3,
                tiny,
                degeneration_prompts=2,
                degeneration_tokens=8,
            )
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}.")


def plasticity_missing() -> str | None:
    """``None`` when ``selfimprove.plasticity`` offers what this runner needs, else why not."""
    try:
        import selfimprove.plasticity as p
    except Exception as exc:
        return f"import selfimprove.plasticity failed: {type(exc).__name__}: {exc}"
    needed = (
        "prune_iteratively",
        "finetune_",
        "perplexity",
        "measure_latency",
        "AdaptivePlasticitySystem",
        "PlasticityConfig",
        "count_parameters",
        "total_heads",
    )
    missing = [n for n in needed if not hasattr(p, n)]
    if missing:
        return f"selfimprove.plasticity lacks {missing}"
    return None


def stdlib_docstrings(folder: Path = CORPUS_FOLDER) -> Path:
    """Write the second corpus: the docstrings of :data:`STDLIB_MODULES`, one file per module.

    Each file holds the module's docstring, then every public class and function defined in
    it (and every public method of those classes) as ``qualified name`` + its docstring
    (``inspect.getdoc``). A module that cannot be imported here is left out. The text depends
    on the Python version (recorded in the JSON with the corpus's fingerprint).

    ``load_corpus`` seeds the split of a folder's documents with the folder's path, so the
    folder has one fixed path (:data:`CORPUS_FOLDER`) whatever ``--work`` says: the same
    split at every run. Files are rewritten only where their text changed (runs at once
    write the same text), and other files in the folder are removed.

    Args:
        folder: Where the ``<module>.txt`` files go.

    Returns:
        ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = set()
    for name in STDLIB_MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:
            continue
        parts = [f"{name}\n{inspect.getdoc(module) or ''}"]
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            doc = inspect.getdoc(obj)
            if doc:
                parts.append(f"{name}.{attr}\n{doc}")
            if inspect.isclass(obj):
                for meth, fn in sorted(vars(obj).items()):
                    if meth.startswith("_") or not inspect.isfunction(fn):
                        continue
                    mdoc = inspect.getdoc(fn)
                    if mdoc:
                        parts.append(f"{name}.{attr}.{meth}\n{mdoc}")
        path, text = folder / f"{name}.txt", "\n\n".join(parts) + "\n"
        written.add(path.name)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for stale in folder.iterdir():
        if stale.name not in written:
            stale.unlink()
    return folder


def _interpolate(curve: Mapping[float, float], x: float) -> float:
    """Linear interpolation of ``curve`` (fraction removed -> increase) at ``x``."""
    xs = sorted(curve)
    if x <= xs[0]:
        return curve[xs[0]] * (x / xs[0]) if xs[0] > 0 else curve[xs[0]]
    for a, b in itertools.pairwise(xs):
        if a <= x <= b:
            return curve[a] + (curve[b] - curve[a]) * (x - a) / (b - a)
    return curve[xs[-1]]


def _plasticity_config(seed: int, cfg: Config, context: int) -> Any:
    """The adaptive arm's settings: the product's defaults but the budget and measurements."""
    from selfimprove.plasticity import DegenerationConfig, PlasticityConfig, TinySpec

    return PlasticityConfig(
        seed=seed,
        context=context,
        finetune_steps=max(1, cfg.steps // cfg.cycles),
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        importance_batches=cfg.importance_batches,
        importance_batch_size=cfg.importance_batch_size,
        eval_windows=cfg.eval_windows,
        degeneration=DegenerationConfig(
            prompts=cfg.degeneration_prompts,
            prompt_tokens=min(16, context // 2),
            new_tokens=min(cfg.degeneration_tokens, context - min(16, context // 2)),
        ),
        latency_repeats=max(3, cfg.latency_repeats // 2),
        measure_reference=False,
        use_memory=False,
        tiny=TinySpec(**cfg.tiny),
        dashboard=False,
    )


def _adaptive_arm(
    system: Any,
    cfg: Config,
    growth_ratio: float,
    baseline: Mapping[str, float],
    curves: Mapping[str, Mapping[float, float]],
) -> tuple[dict[str, Any], Any]:
    """Run one adaptive arm on a set-up system; its row and final model."""
    from selfimprove.plasticity import heads_per_layer, perplexity, total_heads

    t0 = time.perf_counter()
    results = system.run_adaptive_optimization(
        max_cycles=cfg.cycles,
        initial_pruning_level=cfg.initial_level,
        initial_growth_ratio=growth_ratio,
    )
    model = system.model_
    model.eval()
    val, test = system.bench_.val, system.bench_.test
    ppl, tppl = perplexity(model, val), perplexity(model, test)
    heads, n_heads = total_heads(model), int(baseline["heads"])
    steps_per_cycle = system.config.finetune_steps
    reference_fits = {c.reference_steps for c in results.cycles if c.reference_perplexity}
    row: dict[str, Any] = {
        "method": "adaptive",
        "growth_ratio": growth_ratio,
        "heads": heads,
        "fraction_removed": 1 - heads / n_heads,
        "heads_per_layer": heads_per_layer(model),
        "perplexity": ppl,
        "test_perplexity": tppl,
        "increase_vs_reference": ppl / baseline["reference"] - 1,
        "test_increase_vs_reference": tppl / baseline["reference_test"] - 1,
        "increase_vs_start": ppl / baseline["start"] - 1,
        "finetune_steps_spent": steps_per_cycle * len(results.cycles),
        "reference_finetune_steps": steps_per_cycle * len(reference_fits),
        "cycles": [
            {
                "accepted": c.accepted,
                "strategy": c.pruning_strategy,
                "level": c.pruning_level,
                "heads_target": c.heads_target,
                "skipped_targets": list(c.skipped_targets),
                "forecast": c.forecast,
                "growth": c.growth_strategy,
                "ratio": c.growth_ratio,
                "pruned": c.heads_pruned,
                "grown_planned": round(c.growth_ratio * c.heads_pruned),
                "grown": c.heads_grown,
                "heads_after": c.heads_after,
                "perplexity_after": c.perplexity_after,
                "reference_perplexity": c.reference_perplexity,
                "reference_steps": c.reference_steps,
                "reason": c.reason,
                "adaptation": c.adaptation,
            }
            for c in results.cycles
        ],
        "stopped": results.stopped,
        "seconds": time.perf_counter() - t0,
    }
    frac = row["fraction_removed"]
    row["fixed_at_same_fraction"] = {m: _interpolate(c, frac) for m, c in curves.items()}
    row["minus_best_fixed"] = row["increase_vs_reference"] - min(
        row["fixed_at_same_fraction"].values()
    )
    shutil.rmtree(results.run_dir, ignore_errors=True)
    return row, model


def run_seed(seed: int, cfg: Config, cache: Path, workdir: Path, dataset: Any) -> dict[str, Any]:
    """All methods and levels at one seed, on one corpus (a ``Corpus``)."""
    from selfimprove.plasticity import (
        AdaptivePlasticitySystem,
        FinetuneConfig,
        TinySpec,
        count_parameters,
        finetune_,
        perplexity,
        prune_iteratively,
        total_heads,
    )
    from selfimprove.plasticity import heads_per_layer as heads_of

    context = min(cfg.context, TinySpec(**cfg.tiny).context)
    pcfg = _plasticity_config(seed, cfg, context)
    out_dir = workdir / f"adaptive-{seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    system = AdaptivePlasticitySystem("tiny", dataset, out_dir, config=pcfg, home=cache)
    system.setup()  # tiny as the adaptive system loads it for this corpus: one start for all
    base = copy.deepcopy(system.model_).eval()
    base.config.use_cache = False
    data, val, test = system.bench_.data, system.bench_.val, system.bench_.test
    gen = torch.Generator().manual_seed(derive_seed("bench", "heads", "batches", seed) % 2**63)
    batches = [
        data.random_batch(context, cfg.importance_batch_size, gen)
        for _ in range(cfg.importance_batches)
    ]
    ft = FinetuneConfig(
        steps=cfg.steps,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        context=context,
        warmup_steps=max(1, cfg.steps // 10),
    )
    ft_seed = derive_seed("bench", "heads", "finetune", seed)
    n_heads = total_heads(base)
    start_ppl = perplexity(base, val)

    t0 = time.perf_counter()
    reference = copy.deepcopy(base)
    finetune_(reference, data, ft, seed=ft_seed)
    reference.eval()
    ref_ppl, ref_test = perplexity(reference, val), perplexity(reference, test)
    ref_s = time.perf_counter() - t0
    log.info(
        "  seed %d: start perplexity %.3f, reference (fine-tuned %d steps) %.3f",
        seed,
        start_ppl,
        cfg.steps,
        ref_ppl,
    )
    models: dict[str, Any] = {
        "unpruned (start)": base,
        "unpruned + fine-tune (reference)": reference,
    }
    rows: dict[str, Any] = {}
    for method in FIXED:
        for level in LEVELS:
            n = round(level * n_heads)
            t0 = time.perf_counter()
            pruned, _removed, steps = prune_iteratively(
                base,
                n,
                method,
                batches,
                step_fraction=0.1,
                min_heads=1,
                seed=derive_seed("bench", "heads", method, seed),
            )
            one_shot = perplexity(pruned, val)
            finetune_(pruned, data, ft, seed=ft_seed)
            pruned.eval()
            ppl, tppl = perplexity(pruned, val), perplexity(pruned, test)
            name = f"{method} {int(level * 100)} %"
            models[name] = pruned
            rows[name] = {
                "method": method,
                "level": level,
                "heads_removed": n,
                "fraction_removed": n / n_heads,
                "heads_per_layer": heads_of(pruned),
                "prune_steps": len(steps),
                "perplexity_pruned": one_shot,
                "increase_pruned_vs_start": one_shot / start_ppl - 1,
                "perplexity": ppl,
                "test_perplexity": tppl,
                "increase_vs_reference": ppl / ref_ppl - 1,
                "test_increase_vs_reference": tppl / ref_test - 1,
                "increase_vs_start": ppl / start_ppl - 1,
                "seconds": time.perf_counter() - t0,
            }
            log.info(
                "  seed %d %s: one-shot %+.1f %%, after fine-tune %+.1f %% vs reference",
                seed,
                name,
                100 * rows[name]["increase_pruned_vs_start"],
                100 * rows[name]["increase_vs_reference"],
            )
    curves = {
        m: {
            0.0: 0.0,
            **{
                r["fraction_removed"]: r["increase_vs_reference"]
                for r in rows.values()
                if r["method"] == m
            },
        }
        for m in FIXED
    }
    baseline = {
        "heads": n_heads,
        "start": start_ppl,
        "reference": ref_ppl,
        "reference_test": ref_test,
    }
    # ---- adaptive cycles, same total fine-tuning steps; then the other growth setting
    adaptive, models["adaptive"] = _adaptive_arm(system, cfg, cfg.growth_ratio, baseline, curves)
    log.info(
        "  seed %d adaptive: %.0f %% removed, %+.1f %% vs reference, %+.1f points vs best fixed",
        seed,
        100 * adaptive["fraction_removed"],
        100 * adaptive["increase_vs_reference"],
        100 * adaptive["minus_best_fixed"],
    )
    ablation: dict[str, Any] | None = None
    if cfg.growth_ablation:
        other = 0.0 if cfg.growth_ratio > 0 else 0.5
        shutil.rmtree(out_dir, ignore_errors=True)
        twin = AdaptivePlasticitySystem("tiny", dataset, out_dir, config=pcfg, home=cache)
        ablation, models["adaptive, growth ablation"] = _adaptive_arm(
            twin, cfg, other, baseline, curves
        )
        log.info(
            "  seed %d adaptive, growth %.2g: %.0f %% removed, %+.1f %% vs reference",
            seed,
            other,
            100 * ablation["fraction_removed"],
            100 * ablation["increase_vs_reference"],
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    # ---- parameters and latency, all timed side by side (rotated order, warm calls)
    names = list(models)
    inputs = [val[torch.arange(b) % len(val), :-1] for b in (1, 8)]  # (b, T)
    medians = time_rotated(
        [models[n] for n in names],
        inputs,
        repeats=cfg.latency_repeats,
        call=lambda m, x: m(input_ids=x),
    )
    latency: dict[str, dict[str, float]] = {
        n: {"batch1_ms": t[0], "batch8_ms": t[1]} for n, t in zip(names, medians, strict=True)
    }
    base_params = count_parameters(base)
    start = latency["unpruned (start)"]
    for name, lat in latency.items():
        lat["parameters"] = count_parameters(models[name])
        lat["parameter_ratio"] = lat["parameters"] / base_params
        lat["speedup_batch1"] = start["batch1_ms"] / lat["batch1_ms"]
        lat["speedup_batch8"] = start["batch8_ms"] / lat["batch8_ms"]
    return {
        "heads": n_heads,
        "start_perplexity": start_ppl,
        "reference": {"perplexity": ref_ppl, "test_perplexity": ref_test, "seconds": ref_s},
        "fixed": rows,
        "adaptive": adaptive,
        "adaptive_growth_ablation": ablation,
        "models": latency,
    }


def _pct(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{100 * v:+.1f} %"


def _mpct(values: Sequence[float]) -> str:
    s = spread(values)
    if s["median"] is None:
        return "—"
    if s["n"] == 1:
        return _pct(s["median"])
    return f"{_pct(s['median'])} [{_pct(s['min'])} … {_pct(s['max'])}]"


def _points(v: float) -> str:
    return f"{100 * v:+.1f}"


def _path(cycles: Sequence[Mapping[str, Any]]) -> str:
    """The search's path: heads removed in total asked of each cycle, ✓ kept / ✗ rolled back
    (``learn``: a cycle that only fine-tuned); before them, in brackets with ⊘, the larger
    totals the cycle did not fine-tune because their forecast failed."""
    return " ".join(
        "".join(f"({t}⊘) " for t in c.get("skipped_targets", ()))
        + f"{'learn' if c['heads_target'] is None else c['heads_target']}"
        f"{'✓' if c['accepted'] else '✗'}"
        for c in cycles
    )


def _corpus(name: str) -> tuple[Any, str]:
    """Corpus ``name``, loaded and split, and how it was made."""
    from selfimprove.plasticity import load_corpus

    if name == "pydoc":
        return load_corpus(None), "the built-in pydoc help topics (pydoc_data.topics), tuned on"
    if name == "stdlib-docstrings":
        folder = stdlib_docstrings()
        n = len(list(folder.glob("*.txt")))
        return load_corpus(folder), (
            f"docstrings of {n} standard-library modules (one .txt per module: module, public "
            "classes, functions and methods; benchmarks.head_pruning.stdlib_docstrings, in "
            f"{folder}), never tuned on"
        )
    raise ValueError(f"corpus must be one of {CORPORA}, but got {name!r}.")


def _report_corpus(rec: Record, cfg: Config, corpus: str, seeds: Mapping[str, Any]) -> None:
    """The tables and targets of one corpus."""
    first = next(iter(seeds.values()))
    rows = []
    for method in FIXED:
        row: list[Any] = [method]
        for level in LEVELS:
            name = f"{method} {int(level * 100)} %"
            row.append(_mpct([s["fixed"][name]["increase_vs_reference"] for s in seeds.values()]))
        for level in LEVELS:
            name = f"{method} {int(level * 100)} %"
            row.append(
                _mpct([s["fixed"][name]["increase_pruned_vs_start"] for s in seeds.values()])
            )
        rows.append(row)
    rec.table(
        f"{corpus}: perplexity increase after pruning and {cfg.steps} fine-tuning steps, against "
        "the unpruned model fine-tuned the same steps (median [min … max] over seeds); and "
        "one-shot, before fine-tuning, against the start",
        [
            "method",
            *[f"{int(lv * 100)} % removed" for lv in LEVELS],
            *[f"one-shot {int(lv * 100)} %" for lv in LEVELS],
        ],
        rows,
        f"{first['heads']} heads; start perplexity {first['start_perplexity']:.3f}, reference "
        f"{first['reference']['perplexity']:.3f} (seed {next(iter(seeds))}). Validation windows; "
        "test perplexity is in the JSON.",
    )
    rows = []
    for s_key, s in seeds.items():
        a = s["adaptive"]
        rows.append(
            [
                s_key,
                f"{100 * a['fraction_removed']:.0f} % ({s['heads'] - a['heads']} of {s['heads']})",
                _pct(a["increase_vs_reference"]),
                _pct(a["increase_vs_start"]),
                *[_pct(a["fixed_at_same_fraction"][m]) for m in FIXED],
                _points(a["minus_best_fixed"]),
                _path(a["cycles"]),
                f"{a['finetune_steps_spent']} (+{a['reference_finetune_steps']})",
            ]
        )
    rec.table(
        f"{corpus}: adaptive cycles, where they ended, against the fixed methods at the same "
        "fraction (linear interpolation between the measured levels)",
        [
            "seed",
            "heads removed",
            "vs reference",
            "vs start",
            *[f"{m} at that fraction" for m in FIXED],
            "− best fixed (points)",
            "search path (heads removed in total; ✓ kept, ✗ rolled back)",
            "fine-tune steps (+ reference's)",
        ],
        rows,
        "Each cycle is kept only if perplexity stays within 5 % of the start and of the unpruned "
        "start fine-tuned with the same steps and batches; the figure here is against the "
        f"{cfg.steps}-step reference, as for the others. A candidate whose forecast gap after "
        "fine-tuning (from its damage before fine-tuning and the share the run's earlier cycles "
        "left) exceeds the tolerance is not fine-tuned: (n⊘) in the search path. In brackets: "
        "steps the adaptive run spent fine-tuning its own unpruned reference.",
    )
    ablated = {k: s for k, s in seeds.items() if s.get("adaptive_growth_ablation")}
    if ablated:
        rows = []
        for s_key, s in ablated.items():
            a, b = s["adaptive"], s["adaptive_growth_ablation"]
            g = a if a["growth_ratio"] > 0 else b
            grown = sum(c["grown_planned"] for c in g["cycles"])
            kept = sum(c["grown"] for c in g["cycles"])
            rows.append(
                [
                    s_key,
                    f"{a['growth_ratio']:g}",
                    f"{100 * a['fraction_removed']:.0f} %",
                    _pct(a["increase_vs_reference"]),
                    _points(a["minus_best_fixed"]),
                    f"{b['growth_ratio']:g}",
                    f"{100 * b['fraction_removed']:.0f} %",
                    _pct(b["increase_vs_reference"]),
                    _points(b["minus_best_fixed"]),
                    f"{kept} of {grown}",
                ]
            )
        rec.table(
            f"{corpus}: do grown heads pay? The adaptive run with and without growth at equal "
            "steps",
            [
                "seed",
                "growth (adaptive arm)",
                "removed",
                "vs reference",
                "− best fixed",
                "growth (ablation)",
                "removed",
                "vs reference",
                "− best fixed",
                "grown heads kept (growing run)",
            ],
            rows,
            "Grown heads stay only where removing them would cost more than a pruned head "
            "cost; the next cycle grows in proportion to the share that paid.",
        )
    # ---- targets (issue 18)
    fr = [s["adaptive"]["fraction_removed"] for s in seeds.values()]
    inc = [s["adaptive"]["increase_vs_reference"] for s in seeds.values()]
    a_frac, a_inc = float(np.median(fr)), float(np.median(inc))
    met = a_frac >= 0.5 and a_inc <= 0.05
    cycles = [c for s in seeds.values() for c in s["adaptive"]["cycles"]]
    kept_cycles = sum(c["accepted"] for c in cycles)
    facts = (
        f"the adaptive runs kept {kept_cycles} of {len(cycles)} cycles; search paths "
        + "; ".join(f"seed {k}: {_path(s['adaptive']['cycles'])}" for k, s in seeds.items())
        + "."
    )
    rec.target(
        f"{corpus}: adaptive ≥ 50 % of heads removed at ≤ 5 % perplexity above the same-steps "
        "unpruned reference (median over seeds)",
        f"{100 * a_frac:.0f} % removed at {_pct(a_inc)} (median over seeds)",
        met if not cfg.tiny else None,
        "" if met else facts,
    )
    if a_frac <= 0:
        rec.target(
            f"{corpus}: adaptive − best fixed method at the same fraction ≤ 0 points",
            "not comparable: the adaptive runs removed no head",
            None,
            facts,
        )
    else:
        d = float(np.median([s["adaptive"]["minus_best_fixed"] for s in seeds.values()]))
        rec.target(
            f"{corpus}: adaptive − best fixed method at the same fraction ≤ 0 points",
            f"{_points(d)} points of perplexity increase (median over seeds; per seed "
            + ", ".join(_points(s["adaptive"]["minus_best_fixed"]) for s in seeds.values())
            + ")",
            bool(d <= 0) if not cfg.tiny else None,
            "" if d <= 0 else facts,
        )


def _growth_note(cfg: Config, per_corpus: Mapping[str, Mapping[str, Any]]) -> str | None:
    """What the growth ablation says, over every corpus and seed."""
    pairs = [  # (the growing run, the other)
        tuple(sorted((s["adaptive"], ab), key=lambda r: -r["growth_ratio"]))
        for seeds in per_corpus.values()
        for s in seeds.values()
        if (ab := s.get("adaptive_growth_ablation"))
    ]
    if not pairs:
        return None
    diffs = [a["minus_best_fixed"] - b["minus_best_fixed"] for a, b in pairs]
    grown = sum(c["grown_planned"] for a, _ in pairs for c in a["cycles"])
    kept = sum(c["grown"] for a, _ in pairs for c in a["cycles"])
    d = float(np.median(diffs))
    verdict = (
        "growth paid (the growing run ended closer to or below the best fixed method)"
        if d < 0
        else "growth did not pay (the run without growth ended as close or closer to the best "
        "fixed method)"
    )
    return (
        f"Growth, measured: the adaptive system with initial growth ratio "
        f"{pairs[0][0]['growth_ratio']:g} against {pairs[0][1]['growth_ratio']:g} at equal steps "
        f"(the adaptive arm grows {cfg.growth_ratio:g}), {len(pairs)} paired runs: (− best "
        f"fixed) of the growing run minus the other, median {_points(d)} points (per run "
        + ", ".join(_points(x) for x in diffs)
        + f"); {kept} of {grown} grown heads paid and were kept: {verdict}."
    )


def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path, cache: Path) -> Path:
    """Run comparison 3 and write its JSON; returns the file."""
    rec = Record("head_pruning", 3, "Head pruning on the tiny GPT-2", cfg.mode, argv)
    rec.seeds = list(cfg.seeds)
    rec.budgets = {
        "finetune_steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "context": cfg.context,
        "adaptive_cycles": cfg.cycles,
        "adaptive_steps_per_cycle": max(1, cfg.steps // cfg.cycles),
        "threads": 1,
    }
    rec.settings = {"config": asdict(cfg), "step_fraction": 0.1, "min_heads_per_layer": 1}
    missing = plasticity_missing()
    if missing:
        rec.skip("head pruning on the tiny GPT-2", missing)
        rec.target(
            "adaptive ≥ 50 % of heads removed at ≤ 5 % perplexity above the same-steps "
            "unpruned reference",
            f"not run: {missing}",
            None,
        )
        return rec.write(out_dir)
    if cfg.tiny:
        rec.notes.append(f"{cfg.mode} mode: a smaller GPT-2 ({cfg.tiny}) stands in for tiny.")
    workdir.mkdir(parents=True, exist_ok=True)
    per_corpus: dict[str, dict[str, Any]] = {}
    corpora: dict[str, Any] = {}
    for corpus in cfg.corpora:
        text, how = _corpus(corpus)
        corpora[corpus] = {
            "name": text.name,
            "what": how,
            "documents": [len(text.train), len(text.validation), len(text.test)],
            "characters": sum(len(d) for d in (*text.train, *text.validation, *text.test)),
            "fingerprint": text.fingerprint,
        }
        seeds = {}
        for seed in cfg.seeds:
            log.info("head pruning on %s, seed %d", corpus, seed)
            seeds[str(seed)] = run_seed(seed, cfg, cache, workdir, text)
        per_corpus[corpus] = seeds
    rec.results = {"corpora": corpora, "per_corpus": per_corpus}
    for corpus, seeds in per_corpus.items():
        _report_corpus(rec, cfg, corpus, seeds)
    first_corpus, seeds = next(iter(per_corpus.items()))
    first = next(iter(seeds.values()))
    rows = []
    for name, m in first["models"].items():
        rows.append(
            [
                name,
                m["parameters"],
                f"{m['parameter_ratio']:.3f}",
                f"{m['batch1_ms']:.3g}",
                f"{m['speedup_batch1']:.2f}",
                f"{m['batch8_ms']:.3g}",
                f"{m['speedup_batch8']:.2f}",
            ]
        )
    rec.table(
        f"Parameters and latency ({first_corpus}, seed {next(iter(seeds))}; {cfg.context} tokens; "
        "one thread, interleaved, median)",
        ["model", "parameters", "× start", "batch 1 ms", "speed-up", "batch 8 ms", "speed-up"],
        rows,
    )
    note = _growth_note(cfg, per_corpus)
    if note:
        rec.notes.append(note)
    rec.notes.append(
        "Corpora: "
        + "; ".join(
            f"{k}: {v['what']} ({v['characters']} characters, documents train/validation/test "
            f"{'/'.join(map(str, v['documents']))}, sha256 {v['fingerprint'][:12]})"
            for k, v in corpora.items()
        )
    )
    return rec.write(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.head_pruning [--mode quick|full|smoke]``."""

    def cache_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--cache",
            type=Path,
            default=SCRATCH_DIR / "cache",
            help="home folder that caches the pre-trained tiny GPT-2",
        )

    args, command = runner_args("benchmarks.head_pruning", __doc__, argv, cache_option)
    run(Config.for_mode(args.mode), command, args.out, args.work, args.cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
