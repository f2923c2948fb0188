"""Comparison 3: head pruning on the tiny GPT-2. Perplexity increase at 20 / 40 / 60 % of the
heads removed for random, magnitude, gradient (Michel et al. 2019) and the adaptive cycles of
``selfimprove.plasticity``, each at equal fine-tuning budget; parameters and measured latency.

The model is ``tiny`` (4 layers x 8 heads, 128 dims, byte-level, pre-trained on the built-in
pydoc corpus and cached in ``bench-out/cache``). The reference is always the *unpruned* model
fine-tuned for the same steps with the same batches (extra training alone lowers perplexity).

- **random / magnitude / gradient**: ``prune_iteratively`` (steps of at most 10 % of the heads,
  re-scored after each, every layer keeps a head; importance on training windows only), then
  ``finetune_`` for ``steps`` steps. Gradient is Michel et al.'s ``E|dL/d xi_h|`` with per-layer
  normalisation; random and magnitude run through the same machinery.
- **adaptive**: ``AdaptivePlasticitySystem.run_adaptive_optimization`` (prune -> measure -> grow
  -> learn cycles, estimators screened on probe training windows, growth kept only where it pays,
  levels adapted after each cycle, each cycle kept only if perplexity stays within 5 % of the
  start and generations do not degenerate), ``cycles`` cycles of ``steps / cycles`` fine-tuning
  steps each: the same total (rejected cycles spend theirs too), at the same learning rate and
  schedule as the reference and the fixed methods (the product's default, 3e-4 with warm-up).
  It decides how many heads go; its point is compared with the fixed methods interpolated at
  the fraction it reached. The memory of transformations across runs is off (every run starts
  from the same knowledge, so seeds are comparable).

Perplexity on ``eval_windows`` validation windows (test reported beside it); latency timed side
by side (one thread, rotated order, warm calls, median) at batch 1 and at batch 8 of
``context`` tokens.

Run: ``python -m benchmarks.head_pruning --mode quick`` (or ``full``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import shutil
import time
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

__all__ = ["FIXED", "LEVELS", "Config", "main", "run"]

FIXED = ("random", "magnitude", "gradient")
LEVELS = (0.2, 0.4, 0.6)


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

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        if mode == "full":
            return cls(mode, (0, 1, 2, 3, 4), 300, 8, 128, 3e-4, 64, 4, 16, 3, 20)
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
                2,
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
        "load_tiny",
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


def _interpolate(curve: Mapping[float, float], x: float) -> float:
    """Linear interpolation of ``curve`` (fraction removed -> increase) at ``x``."""
    xs = sorted(curve)
    if x <= xs[0]:
        return curve[xs[0]] * (x / xs[0]) if xs[0] > 0 else curve[xs[0]]
    for a, b in itertools.pairwise(xs):
        if a <= x <= b:
            return curve[a] + (curve[b] - curve[a]) * (x - a) / (b - a)
    return curve[xs[-1]]


def run_seed(seed: int, cfg: Config, cache: Path, workdir: Path) -> dict[str, Any]:
    """All methods and levels at one seed."""
    from selfimprove.plasticity import (
        AdaptivePlasticitySystem,
        ByteTokenizer,
        DegenerationConfig,
        FinetuneConfig,
        PlasticityConfig,
        TinySpec,
        count_parameters,
        finetune_,
        load_corpus,
        load_tiny,
        perplexity,
        prune_iteratively,
        tokenize_corpus,
        total_heads,
    )
    from selfimprove.plasticity import heads_per_layer as heads_of

    spec = TinySpec(**cfg.tiny)
    base = load_tiny(spec, home=cache)
    base.config.use_cache = False
    data = tokenize_corpus(load_corpus(None), ByteTokenizer())
    context = min(cfg.context, int(base.config.n_positions))
    val = data.windows("validation", context, cfg.eval_windows)
    test = data.windows("test", context, cfg.eval_windows)
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
    # ---- adaptive cycles, same total fine-tuning steps
    t0 = time.perf_counter()
    out_dir = workdir / f"adaptive-{seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    pcfg = PlasticityConfig(
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
        tiny=spec,
        dashboard=False,
    )
    system = AdaptivePlasticitySystem("tiny", None, out_dir, config=pcfg, home=cache)
    results = system.run_adaptive_optimization(max_cycles=cfg.cycles)
    adaptive = system.model_
    adaptive.eval()
    a_ppl, a_test = perplexity(adaptive, val), perplexity(adaptive, test)
    a_heads = total_heads(adaptive)
    models["adaptive"] = adaptive
    adaptive_row: dict[str, Any] = {
        "method": "adaptive",
        "heads": a_heads,
        "fraction_removed": 1 - a_heads / n_heads,
        "heads_per_layer": heads_of(adaptive),
        "perplexity": a_ppl,
        "test_perplexity": a_test,
        "increase_vs_reference": a_ppl / ref_ppl - 1,
        "test_increase_vs_reference": a_test / ref_test - 1,
        "increase_vs_start": a_ppl / start_ppl - 1,
        "finetune_steps_spent": pcfg.finetune_steps * len(results.cycles),
        "cycles": [
            {
                "accepted": c.accepted,
                "strategy": c.pruning_strategy,
                "level": c.pruning_level,
                "growth": c.growth_strategy,
                "ratio": c.growth_ratio,
                "pruned": c.heads_pruned,
                "grown": c.heads_grown,
                "heads_after": c.heads_after,
                "perplexity_after": c.perplexity_after,
                "reason": c.reason,
            }
            for c in results.cycles
        ],
        "stopped": results.stopped,
        "seconds": time.perf_counter() - t0,
    }
    shutil.rmtree(out_dir, ignore_errors=True)
    frac = adaptive_row["fraction_removed"]
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
    adaptive_row["fixed_at_same_fraction"] = {m: _interpolate(c, frac) for m, c in curves.items()}
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
        "adaptive": adaptive_row,
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
            "≥ 40 % of heads removed at ≤ 5 % perplexity increase on tiny",
            f"not run: {missing}",
            None,
        )
        return rec.write(out_dir)
    if cfg.tiny:
        rec.notes.append(f"{cfg.mode} mode: a smaller GPT-2 ({cfg.tiny}) stands in for tiny.")
    workdir.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for seed in cfg.seeds:
        log.info("head pruning, seed %d", seed)
        seeds[str(seed)] = run_seed(seed, cfg, cache, workdir)
    rec.results = {"per_seed": seeds}
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
        f"Perplexity increase after pruning and {cfg.steps} fine-tuning steps, against the "
        "unpruned model fine-tuned the same steps (median [min … max] over seeds); and "
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
                f"{sum(c['accepted'] for c in a['cycles'])}/{len(a['cycles'])}",
                a["finetune_steps_spent"],
            ]
        )
    rec.table(
        "Adaptive cycles: where they ended, against the fixed methods at the same fraction "
        "(linear interpolation between the measured levels)",
        [
            "seed",
            "heads removed",
            "vs reference",
            "vs start",
            *[f"{m} at that fraction" for m in FIXED],
            "cycles kept",
            "fine-tune steps",
        ],
        rows,
        "The adaptive system keeps a cycle only if perplexity stays within 5 % of the *start* "
        "(its own rule); the figure here is against the fine-tuned reference, as for the others.",
    )
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
        f"Parameters and latency (seed {next(iter(seeds))}; {cfg.context} tokens; one thread, "
        "interleaved, median)",
        ["model", "parameters", "× start", "batch 1 ms", "speed-up", "batch 8 ms", "speed-up"],
        rows,
    )
    # ---- targets
    best40 = {
        m: float(
            np.median([s["fixed"][f"{m} 40 %"]["increase_vs_reference"] for s in seeds.values()])
        )
        for m in FIXED
    }
    fr = [s["adaptive"]["fraction_removed"] for s in seeds.values()]
    inc = [s["adaptive"]["increase_vs_reference"] for s in seeds.values()]
    a_frac, a_inc = float(np.median(fr)), float(np.median(inc))
    met = a_frac >= 0.4 and a_inc <= 0.05
    best_m = min(best40, key=lambda m: best40[m])
    cycles = [c for s in seeds.values() for c in s["adaptive"]["cycles"]]
    kept = sum(c["accepted"] for c in cycles)
    ref_change = float(
        np.median(
            [s["reference"]["perplexity"] / s["start_perplexity"] - 1 for s in seeds.values()]
        )
    )
    facts = (
        f"the adaptive runs kept {kept} of {len(cycles)} cycles"
        + (
            f" (rejected: perplexity after the cycle's {max(1, cfg.steps // cfg.cycles)} "
            "fine-tuning steps above start + 5 %, "
            + ", ".join(f"{c['perplexity_after']:.3g}" for c in cycles if not c["accepted"])
            + ")"
            if kept < len(cycles)
            else ""
        )
        + f" and ended at {100 * a_frac:.0f} % removed; the unpruned reference moved "
        f"{_pct(ref_change)} from the start with {cfg.steps} steps at lr {cfg.lr:g}; fixed "
        f"{best_m} pruning at 40 % ends at {_pct(best40[best_m])} against that reference."
    )
    rec.target(
        "≥ 40 % of heads removed at ≤ 5 % perplexity increase on tiny",
        f"adaptive: {100 * a_frac:.0f} % removed at {_pct(a_inc)} (median over seeds); best fixed "
        f"at 40 %: {best_m} {_pct(best40[best_m])}",
        met if not cfg.tiny else None,
        ""
        if met
        else facts + " Next: the cycles' fine-tuning must recover what their pruning "
        "costs (more steps per cycle, or a learning rate that does not undo the pre-training) "
        "before they can go as far as one-shot gradient pruning does.",
    )
    if a_frac <= 0:
        rec.target(
            "Adaptive at least as good as the best fixed importance",
            "not comparable: the adaptive runs removed no head",
            None,
            facts,
        )
    else:
        diffs = [
            s["adaptive"]["increase_vs_reference"]
            - min(s["adaptive"]["fixed_at_same_fraction"].values())
            for s in seeds.values()
        ]
        d = float(np.median(diffs))
        rec.target(
            "Adaptive at least as good as the best fixed importance",
            f"adaptive − best fixed at the same fraction: {100 * d:+.1f} points of perplexity "
            "increase (median over seeds)",
            bool(d <= 0) if not cfg.tiny else None,
            "" if d <= 0 else facts,
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
