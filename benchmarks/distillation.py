"""Comparison 9: distillation by feature mapping. A small student of a wider, trained teacher is
distilled with soft targets alone (Hinton et al. 2015) and with soft targets plus FitNets hints
(Romero et al. 2015: a learned linear map from the student's last hidden layer to the
teacher's, an L2 loss on it), at equal epochs, paired by seed.

Every arm is the product's own ``DistillStrategy.apply`` (teacher chosen on the training
holdout, teacher targets precomputed, ``train_``), on the digits task of the benchmarks (the
built-in split), with the product's training defaults (Adam, lr 1e-3, plateau schedule, batch
64, T = 4, alpha = 0.7) except ``patience = 0``, so every arm runs exactly the same epochs. Within
a seed the arms share the teacher, the student's initial weights, the holdout and the batch
order: only ``hint_weight`` differs. Each seed trains its own teacher.

Settings (``full``): a width-16 student of a width-256 teacher (dropout 0.2), one hidden layer
each, and a deeper pair (three hidden layers each: FitNets' own case is a thin, deep student);
10 seeds; hint weights 0.1, 1 and 10 against 0 (soft targets alone). Test error is the figure;
the paired test is ``selfimprove.measure.stats.paired_test`` over the per-seed accuracies (a
one-sided paired bootstrap of the mean difference), with Wilcoxon's signed-rank p beside it.

Rule for the product's default (declared before the run): ``hint_weight`` defaults to the weight
with the lowest median test error among those whose paired p-value is below 0.05 / (number of
weights) in **every** setting; if none, it stays 0. The rule's verdict and the default in
``selfimprove.strategies._distill.DEFAULT_HINT_WEIGHT`` are both recorded, as a target.

Found (full run, 2 shared cores): see ``results/distillation.full.json`` and RESULTS.md,
section 9; the default stays as the rule says.

Run: ``python -m benchmarks.distillation --mode quick`` (or ``full``).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import (
    MODES,
    BenchTask,
    Record,
    bench_task,
    error_of,
    log,
    paired_summary,
    runner_args,
    score,
    spread,
)
from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.stats import paired_test
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies import Budget, DistillStrategy, StrategyContext
from selfimprove.strategies._distill import DEFAULT_HINT_WEIGHT

__all__ = ["Config", "Setting", "main", "run"]

TEACHER = "bench_teacher"
STUDENT = "bench_student"
ALPHA = 0.05  # family-wise level of the default rule (Bonferroni over the weights)


@dataclass(frozen=True)
class Setting:
    """One teacher / student pair.

    Attributes:
        key: Short name.
        teacher: Teacher architecture (``build_mlp`` params).
        student: Student architecture.
    """

    key: str
    teacher: dict[str, Any]
    student: dict[str, Any]


def _mlp(width: int, depth: int, dropout: float = 0.0) -> dict[str, Any]:
    return {"width": width, "depth": depth, "activation": "relu", "dropout": dropout}


@dataclass(frozen=True)
class Config:
    """What one run does.

    Attributes:
        mode: ``full``, ``quick`` or ``smoke``.
        seeds: Seeds (each trains its own teacher).
        settings: Teacher / student pairs.
        teacher_epochs: Teacher training epochs (patience 10, best holdout weights kept).
        student_epochs: Epochs of every student (patience 0: all run them).
        hint_weights: Weights compared with 0 (soft targets alone).
    """

    mode: str
    seeds: tuple[int, ...]
    settings: tuple[Setting, ...]
    teacher_epochs: int
    student_epochs: int
    hint_weights: tuple[float, ...]

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        shallow = Setting("16x1 of 256x1", _mlp(256, 1, 0.2), _mlp(16, 1))
        deep = Setting("16x3 of 256x3", _mlp(256, 3, 0.2), _mlp(16, 3))
        if mode == "full":
            return cls(mode, tuple(range(10)), (shallow, deep), 60, 30, (0.1, 1.0, 10.0))
        if mode == "quick":
            return cls(mode, (0, 1, 2), (shallow,), 40, 20, (1.0,))
        if mode == "smoke":
            tiny = Setting("8x1 of 32x1", _mlp(32, 1), _mlp(8, 1))
            return cls(mode, (0,), (tiny,), 2, 2, (1.0,))
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}.")


def run_seed(
    bt: BenchTask, setting: Setting, seed: int, cfg: Config, workdir: Path
) -> dict[str, Any]:
    """One teacher, then one student per hint weight (0 first), each scored on both splits."""
    s = derive_seed("bench", "distillation", setting.key, seed)
    t0 = time.perf_counter()
    with torch_seeded(s):
        teacher = bt.task.build(setting.teacher)
    train_(teacher, bt.task, TrainConfig(epochs=cfg.teacher_epochs, lr=1e-3, patience=10, seed=s))
    teacher_seconds = time.perf_counter() - t0
    home = workdir / f"distillation-{seed}-{s}"
    shutil.rmtree(home, ignore_errors=True)
    arms: dict[str, Any] = {}
    with SelfImprover(home, config=SelfImprovementConfig(auto_start=False), seed=seed) as si:
        si.register_model(TEACHER, bt.task, teacher, dict(setting.teacher))
        with torch_seeded(derive_seed(s, "incumbent")):  # untrained: any teacher beats it
            si.register_model(STUDENT, bt.task, bt.task.build(setting.student), setting.student)
        incumbent, loaded = si.registry.load(STUDENT), si.registry.load(TEACHER)
        for weight in (0.0, *cfg.hint_weights):
            ctx = StrategyContext(
                task=bt.task,
                objective=bt.primary.name,
                budget=Budget(epochs=cfg.student_epochs, seconds=600.0),
                seed=derive_seed(s, "student"),
                teachers=(loaded,),
                params={"student_params": setting.student, "hint_weight": weight, "patience": 0},
            )
            t = time.perf_counter()
            cand = DistillStrategy().apply(incumbent, ctx)
            hints = cand.details["hints"]
            arms[f"{weight:g}"] = {
                "hint_weight": weight,
                "validation": score(cand.module, bt.task, "validation"),
                "test": score(cand.module, bt.task, "test"),
                "epochs": cand.cost.epochs,
                "seconds": time.perf_counter() - t,
                "hints_used": hints["used"],
                "hint_term_first_epoch": hints.get("term_first_epoch"),
                "hint_term_last_epoch": hints.get("term_last_epoch"),
                "parameters": sum(p.numel() for p in cand.module.parameters()),
            }
        teacher_scores = {
            "validation": score(teacher, bt.task, "validation"),
            "test": score(teacher, bt.task, "test"),
        }
    shutil.rmtree(home, ignore_errors=True)
    log.info(
        "[%s seed %d] teacher test %.4f; students test %s",
        setting.key,
        seed,
        teacher_scores["test"],
        ", ".join(f"w={k}: {v['test']:.4f}" for k, v in arms.items()),
    )
    return {"teacher": {**teacher_scores, "seconds": teacher_seconds}, "arms": arms}


def _f(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{d}g}" if isinstance(v, float) else str(v)


def _m(values: Sequence[float], d: int = 3) -> str:
    s = spread(values)
    if s["median"] is None:
        return "—"
    if s["n"] == 1:
        return _f(s["median"], d)
    return f"{_f(s['median'], d)} [{_f(s['min'], d)}–{_f(s['max'], d)}]"


def compare(bt: BenchTask, per_seed: dict[str, Any], weights: Sequence[float]) -> dict[str, Any]:
    """Each hint weight against soft targets alone, paired by seed, on test and validation."""
    objective = bt.primary
    seeds = list(per_seed)
    out: dict[str, Any] = {}
    for weight in weights:
        key = f"{weight:g}"
        row: dict[str, Any] = {}
        for split in ("test", "validation"):
            base = np.array([per_seed[s]["arms"]["0"][split] for s in seeds])
            hint = np.array([per_seed[s]["arms"][key][split] for s in seeds])
            test_name, p = paired_test(objective, base, hint)
            row[split] = {
                "error_soft": spread([error_of(objective, v) for v in base]),
                "error_hints": spread([error_of(objective, v) for v in hint]),
                # Positive: hints lowered the error in that seed.
                "error_reduction": spread(
                    [
                        error_of(objective, a) - error_of(objective, b)
                        for a, b in zip(base, hint, strict=True)
                    ]
                ),
                "paired_test": test_name,
                "p_hints_better": p if len(seeds) >= 2 else None,
                "summary": paired_summary(list(hint), list(base), objective),
            }
        out[key] = row
    return out


def decide(comparisons: dict[str, dict[str, Any]], weights: Sequence[float]) -> dict[str, Any]:
    """The default the measurement supports, by the rule of the module docstring."""
    level = ALPHA / max(1, len(weights))
    passing = []
    for weight in weights:
        key = f"{weight:g}"
        ps = [c[key]["test"]["p_hints_better"] for c in comparisons.values()]
        if ps and all(p is not None and p < level for p in ps):
            medians = [c[key]["test"]["error_hints"]["median"] for c in comparisons.values()]
            passing.append((float(np.mean(medians)), weight))
    chosen = min(passing)[1] if passing else 0.0
    return {
        "rule": f"the weight with the lowest median test error among those with paired p < "
        f"{ALPHA} / {len(weights)} = {level:.4g} in every setting; otherwise 0",
        "level": level,
        "supported_default": chosen,
        "product_default": DEFAULT_HINT_WEIGHT,
    }


def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path) -> Path:
    """Run comparison 9 and write its JSON; returns the file."""
    rec = Record(
        "distillation",
        9,
        "Distillation: soft targets alone vs soft targets + hints",
        cfg.mode,
        argv,
    )
    rec.seeds = list(cfg.seeds)
    rec.budgets = {
        "teacher_epochs": cfg.teacher_epochs,
        "student_epochs (every arm, patience 0)": cfg.student_epochs,
        "threads": 1,
    }
    rec.settings = {
        "config": asdict(cfg),
        "task": "digits",
        "strategy": "DistillStrategy.apply, product defaults (T=4, alpha=0.7, adam, lr 1e-3, "
        "plateau, batch 64) but patience 0; params {student_params, hint_weight, patience}",
        "paired_test": "selfimprove.measure.stats.paired_test over per-seed accuracies "
        "(one-sided paired bootstrap, 2000 resamples); Wilcoxon signed-rank p beside it",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    bt = bench_task("digits")
    per_setting: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    for setting in cfg.settings:
        per_seed = {str(seed): run_seed(bt, setting, seed, cfg, workdir) for seed in cfg.seeds}
        comparisons[setting.key] = compare(bt, per_seed, cfg.hint_weights)
        per_setting[setting.key] = {"setting": asdict(setting), "per_seed": per_seed}
    decision = decide(comparisons, cfg.hint_weights)
    rec.results = {
        "task": bt.description,
        "objective": bt.primary.name,
        "settings": per_setting,
        "comparisons": comparisons,
        "decision": decision,
    }
    for key, t in per_setting.items():
        seeds = list(t["per_seed"].values())
        c = comparisons[key]
        rows = [
            [
                "teacher",
                _m([error_of(bt.primary, r["teacher"]["test"]) for r in seeds], 3),
                _m([error_of(bt.primary, r["teacher"]["validation"]) for r in seeds], 3),
                "—",
                "—",
                "—",
                "—",
                "—",
            ],
            [
                "soft targets alone (hint_weight 0)",
                _m([error_of(bt.primary, r["arms"]["0"]["test"]) for r in seeds], 3),
                _m([error_of(bt.primary, r["arms"]["0"]["validation"]) for r in seeds], 3),
                "—",
                "—",
                "—",
                "—",
                "—",
            ],
        ]
        for weight in cfg.hint_weights:
            w = f"{weight:g}"
            test = c[w]["test"]
            sm = test["summary"]
            rows.append(
                [
                    f"soft targets + hints (hint_weight {w})",
                    _m([error_of(bt.primary, r["arms"][w]["test"]) for r in seeds], 3),
                    _m([error_of(bt.primary, r["arms"][w]["validation"]) for r in seeds], 3),
                    _m(test["error_reduction"]["values"], 2),
                    f"{sm['wins']} / {sm['ties']} / {sm['losses']}",
                    _f(test["p_hints_better"], 2),
                    _f(sm["wilcoxon_p_ours_better"], 2),
                    f"{_m([r['arms'][w]['hint_term_first_epoch'] for r in seeds], 2)} → "
                    f"{_m([r['arms'][w]['hint_term_last_epoch'] for r in seeds], 2)}",
                ]
            )
        rec.table(
            f"digits, student {key}: test error at {cfg.student_epochs} epochs "
            f"(median [min–max] over {len(seeds)} seeds)",
            [
                "model",
                "test error",
                "validation error",
                "test error reduction by hints (per seed)",
                "hints wins / ties / losses",
                "p (paired bootstrap, hints better)",
                "p (Wilcoxon)",
                "hint term, first → last epoch",
            ],
            rows,
            "Every student row is DistillStrategy.apply with the same seed, initial weights, "
            "batches and epochs; only hint_weight differs. The hint term is "
            "||r(h_s) - h_t||^2 / mean(h_t^2) (1: predicting zeros).",
        )
    supported, product = decision["supported_default"], decision["product_default"]
    best = [
        f"{key}, hint_weight {w}: median test error reduction "
        f"{_f(test['error_reduction']['median'], 2)}, p {_f(test['p_hints_better'], 2)}"
        for key, c in comparisons.items()
        for w, test in ((w, c[w]["test"]) for w in c)
    ]
    rec.target(
        "Hints kept by default only where they help: the default hint_weight is what the "
        "measurement supports",
        f"supported default {supported:g}, product default {product:g} ({'; '.join(best)})",
        supported == product,
        ""
        if supported == product
        else "the measured support and the product's default differ: change DEFAULT_HINT_WEIGHT",
    )
    rec.notes.append(
        "Attention transfer (Zagoruyko & Komodakis 2017) is not measured: distill runs only on "
        "classification and regression tasks, whose students are MLPs without attention maps."
    )
    rec.notes.append(f"Default rule: {decision['rule']}.")
    return rec.write(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.distillation [--mode quick|full|smoke]``."""
    args, command = runner_args("benchmarks.distillation", __doc__, argv)
    run(Config.for_mode(args.mode), command, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
