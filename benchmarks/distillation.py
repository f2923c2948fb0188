"""Comparison 9: distillation by feature mapping and by attention transfer. A small student of a
wider, trained teacher is distilled with soft targets alone (Hinton et al. 2015) and with soft
targets plus FitNets hints (Romero et al. 2015: a learned linear map from the student's last
hidden layer to the teacher's, an L2 loss on it), at equal epochs, paired by seed; and a pruned
GPT-2 student of its unpruned parent is distilled with soft targets alone and with soft targets
plus attention transfer (Zagoruyko & Komodakis 2017), at equal steps, paired by seed.

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

Attention transfer (``full``): on the benchmarks' tiny GPT-2 task (byte-level pydoc, windows of
64 tokens, 128 validation and test windows), one parent is pre-trained (``tiny``'s architecture,
4 layers x 8 heads, 128 dims; 1500 steps of 16 windows at lr 3e-3 with warm-up and cosine
decay); each seed removes half of its heads by gradient importance (Michel et al. 2019,
iterative, on that seed's training windows: what the ``heads`` strategy does), without
fine-tuning. The pruned model is the incumbent; its parent the only teacher. One parent for all
seeds, trained long: distillation should help where the teacher stays better than what its
student reaches in the same steps on the labels alone; a parent pre-trained 400 or 800 steps
was caught up by its pruned student's 150 steps of fine-tuning on labels (one seed each, while
this benchmark was written), and pre-training a 1500-step parent per seed would take ~2 min a
seed. Every arm is ``DistillStrategy.apply`` with
the product's defaults (T = 4, alpha = 0.7, lr 3e-4 with warm-up and cosine decay, batch 16) and
the same ``steps``, seed and batches; only ``attention_weight`` differs (0.1, 1 and 10 against 0),
plus a reference arm without the teacher's outputs (alpha = 0: fine-tuning on the labels alone).
The figure is the test NLL (nats per token; perplexity = exp); the paired test is
``paired_test`` over the per-seed test NLLs, Wilcoxon beside it. The same rule decides the
default ``attention_weight`` (``DEFAULT_ATTENTION_WEIGHT``), recorded as a second target.

Found (full run, 2 shared cores): see ``results/distillation.full.json`` and RESULTS.md,
section 9; the defaults are what the rule says: ``hint_weight`` 0 (no weight helped), and
``attention_weight`` 0.1 (6 of 6 seeds better than soft targets alone on test, by a median of
0.05 % in perplexity, not seen on validation; 1 and 10 hurt).

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
import torch

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
from selfimprove.measure.finetune import FinetuneConfig, finetune_
from selfimprove.measure.stats import paired_test
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.transformer.gates import heads_per_layer
from selfimprove.nn.transformer.importance import prune_iteratively
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies import Budget, DistillStrategy, StrategyContext
from selfimprove.strategies._distill import DEFAULT_ATTENTION_WEIGHT, DEFAULT_HINT_WEIGHT
from selfimprove.strategies._distill_attention import (
    AttentionPair,
    attention_loss,
    attention_maps,
    attention_pair,
    eager_attention,
    gpt2_of,
    logits_and_attentions,
)
from selfimprove.tasks.language import CausalLM, LanguageModelTask

__all__ = ["Config", "LMSetting", "Setting", "main", "run"]

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
class LMSetting:
    """The language-model pair: a pruned GPT-2 student of its unpruned, trained parent.

    Attributes:
        arch: The parent's architecture (``LanguageModelTask`` params).
        train_windows: Training windows the task keeps (its teacher-choice holdout is drawn
            from them; the fine-tuning batches come from the whole training stream).
        eval_windows: Validation and test windows (64 tokens each).
        parent_steps: Pre-training steps of the parent (16 windows, lr 3e-3).
        prune_fraction: Share of the parent's heads removed (gradient importance, iterative).
        steps: Distillation steps of every arm (16 windows each).
        seeds: Seeds (each prunes the parent on its own windows and trains its own students).
        attention_weights: Weights compared with 0 (soft targets alone).
    """

    arch: dict[str, Any]
    train_windows: int
    eval_windows: int
    parent_steps: int
    prune_fraction: float
    steps: int
    seeds: tuple[int, ...]
    attention_weights: tuple[float, ...]


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
        lm: The attention-transfer comparison on the tiny GPT-2.
    """

    mode: str
    seeds: tuple[int, ...]
    settings: tuple[Setting, ...]
    teacher_epochs: int
    student_epochs: int
    hint_weights: tuple[float, ...]
    lm: LMSetting

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        shallow = Setting("16x1 of 256x1", _mlp(256, 1, 0.2), _mlp(16, 1))
        deep = Setting("16x3 of 256x3", _mlp(256, 3, 0.2), _mlp(16, 3))
        tiny_gpt2 = {"n_layer": 4, "n_head": 8, "n_embd": 128, "n_positions": 128}
        if mode == "full":
            lm = LMSetting(tiny_gpt2, 512, 128, 1500, 0.5, 150, tuple(range(6)), (0.1, 1.0, 10.0))
            return cls(mode, tuple(range(10)), (shallow, deep), 60, 30, (0.1, 1.0, 10.0), lm)
        if mode == "quick":
            lm = LMSetting(tiny_gpt2, 512, 64, 300, 0.5, 40, (0, 1), (1.0,))
            return cls(mode, (0, 1, 2), (shallow,), 40, 20, (1.0,), lm)
        if mode == "smoke":
            tiny = Setting("8x1 of 32x1", _mlp(32, 1), _mlp(8, 1))
            small = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 64}
            lm = LMSetting(small, 32, 8, 150, 0.5, 3, (0,), (1.0,))
            return cls(mode, (0,), (tiny,), 2, 2, (1.0,), lm)
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


def decide(
    comparisons: dict[str, dict[str, Any]],
    weights: Sequence[float],
    *,
    p_key: str = "p_hints_better",
    error_key: str = "error_hints",
    product_default: float = DEFAULT_HINT_WEIGHT,
) -> dict[str, Any]:
    """The default the measurement supports, by the rule of the module docstring.

    Args:
        comparisons: Setting -> weight -> split -> ``{p_key, error_key: spread, ...}``.
        weights: The weights compared with 0.
        p_key: The one-sided paired p-value (the term better than soft targets alone).
        error_key: The spread of the arm's test error (NLL for a language model).
        product_default: The product's default, recorded beside the verdict.
    """
    level = ALPHA / max(1, len(weights))
    passing = []
    for weight in weights:
        key = f"{weight:g}"
        ps = [c[key]["test"][p_key] for c in comparisons.values()]
        if ps and all(p is not None and p < level for p in ps):
            medians = [c[key]["test"][error_key]["median"] for c in comparisons.values()]
            passing.append((float(np.mean(medians)), weight))
    chosen = min(passing)[1] if passing else 0.0
    return {
        "rule": f"the weight with the lowest median test error among those with paired p < "
        f"{ALPHA} / {len(weights)} = {level:.4g} in every setting; otherwise 0",
        "level": level,
        "supported_default": chosen,
        "product_default": product_default,
    }


# ---------------------------------------------------------------------- attention transfer
#: Test windows on which each student's attention maps are compared with its parent's.
ATTENTION_WINDOWS = 32
#: Windows per batch when pre-training a parent and scoring heads.
LM_BATCH = 16


@torch.no_grad()
def attention_distance(
    student: torch.nn.Module, teacher: torch.nn.Module, x: torch.Tensor
) -> float:
    """The attention-transfer term between two GPT-2s on windows ``x`` ``(N, T)`` (eval mode):
    ``mean_layers mean_windows ||a_s - a_t||^2`` (0: the same maps; at most 4)."""
    pair = attention_pair(student, teacher, x.shape[1])
    if not isinstance(pair, AttentionPair):
        raise ValueError(pair)
    student.eval()
    teacher.eval()
    with eager_attention([student, teacher]):
        s_maps = attention_maps(logits_and_attentions(gpt2_of(student), x)[1])
        t_maps = attention_maps(logits_and_attentions(gpt2_of(teacher), x)[1])
    return float(attention_loss(s_maps, t_maps, pair))


def lm_arms(lm: LMSetting) -> list[tuple[str, dict[str, Any]]]:
    """``(key, params)`` of every arm: labels alone, soft targets alone, then each weight."""
    return [
        ("labels", {"alpha": 0.0, "attention_weight": 0.0}),
        ("0", {"attention_weight": 0.0}),
        *((f"{w:g}", {"attention_weight": w}) for w in lm.attention_weights),
    ]


def pretrain_parent(task: LanguageModelTask, lm: LMSetting) -> tuple[CausalLM, float]:
    """The parent, pre-trained on the training stream (seeded); and the seconds it took."""
    s = derive_seed("bench", "distillation", "attention", "parent")
    t0 = time.perf_counter()
    with torch_seeded(s):
        parent = task.build(lm.arch)
    assert isinstance(parent, CausalLM)
    pretrain = FinetuneConfig(
        steps=lm.parent_steps,
        lr=3e-3,
        batch_size=LM_BATCH,
        context=task.context,
        warmup_steps=max(1, lm.parent_steps // 20),
        weight_decay=0.01,
    )
    finetune_(parent.gpt2, task.token_data(), pretrain, seed=s)
    return parent.eval(), time.perf_counter() - t0


def run_lm_seed(
    bt: BenchTask, lm: LMSetting, parent: CausalLM, seed: int, workdir: Path
) -> dict[str, Any]:
    """The parent pruned on this seed's windows, then one student per arm, each scored."""
    s = derive_seed("bench", "distillation", "attention", seed)
    task = bt.task
    assert isinstance(task, LanguageModelTask)  # bench_task("tiny_gpt2")
    data, context = task.token_data(), task.context
    gen = torch.Generator().manual_seed(derive_seed(s, "prune-batches") % 2**63)
    batches = [data.random_batch(context, LM_BATCH, gen) for _ in range(4)]
    n_heads = sum(heads_per_layer(parent.gpt2))
    pruned_gpt2, _removed, _ = prune_iteratively(
        parent.gpt2, round(lm.prune_fraction * n_heads), "gradient", batches, seed=s
    )
    pruned = CausalLM(pruned_gpt2).eval()
    student_params = {**lm.arch, "heads_per_layer": heads_per_layer(pruned_gpt2)}
    x_att = task.splits().test.x[:ATTENTION_WINDOWS]  # (N, T)
    home = workdir / f"distillation-lm-{seed}-{s}"
    shutil.rmtree(home, ignore_errors=True)
    arms: dict[str, Any] = {}
    with SelfImprover(home, config=SelfImprovementConfig(auto_start=False), seed=seed) as si:
        si.register_model(TEACHER, task, parent, dict(lm.arch))
        si.register_model(STUDENT, task, pruned, student_params)
        incumbent, loaded = si.registry.load(STUDENT), si.registry.load(TEACHER)
        for key, params in lm_arms(lm):
            ctx = StrategyContext(
                task=task,
                objective=bt.primary.name,
                budget=Budget(epochs=1, seconds=3600.0),
                seed=derive_seed(s, "student"),
                teachers=(loaded,),
                params={"steps": lm.steps, **params},
            )
            t = time.perf_counter()
            cand = DistillStrategy().apply(incumbent, ctx)
            seconds = time.perf_counter() - t
            att = cand.details["attention"]
            arms[key] = {
                "params": params,
                "validation": score(cand.module, task, "validation"),
                "test": score(cand.module, task, "test"),
                "steps": cand.details["steps_run"],
                "seconds": seconds,
                "attention_used": att["used"],
                "attention_term_first_steps": att.get("term_first_steps"),
                "attention_term_last_steps": att.get("term_last_steps"),
                "attention_distance_test": attention_distance(cand.module, parent, x_att),
                "heads_per_layer": cand.params["heads_per_layer"],
            }
        before = {
            "validation": score(pruned, task, "validation"),
            "test": score(pruned, task, "test"),
            "attention_distance_test": attention_distance(pruned, parent, x_att),
        }
    shutil.rmtree(home, ignore_errors=True)
    log.info(
        "[lm seed %d] pruned test %.4f; students test %s",
        seed,
        before["test"],
        ", ".join(f"{k}: {v['test']:.4f}" for k, v in arms.items()),
    )
    return {
        "pruned": {**before, "heads_per_layer": student_params["heads_per_layer"]},
        "arms": arms,
    }


def compare_lm(bt: BenchTask, per_seed: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """Each arm against soft targets alone (``"0"``), paired by seed, on test and validation."""
    objective = bt.primary
    seeds = list(per_seed)
    out: dict[str, Any] = {}
    for key in keys:
        row: dict[str, Any] = {}
        for split in ("test", "validation"):
            base = np.array([per_seed[s]["arms"]["0"][split] for s in seeds])
            arm = np.array([per_seed[s]["arms"][key][split] for s in seeds])
            test_name, p = paired_test(objective, base, arm)
            row[split] = {
                "nll_soft": spread(list(base)),
                "nll_arm": spread(list(arm)),
                # Positive: the arm's perplexity is higher than soft targets alone's.
                "perplexity_change": spread(
                    [math.exp(a - b) - 1.0 for a, b in zip(arm, base, strict=True)]
                ),
                "paired_test": test_name,
                "p_better": p if len(seeds) >= 2 else None,
                "summary": paired_summary(list(arm), list(base), objective),
            }
        out[key] = row
    return out


def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path) -> Path:
    """Run comparison 9 and write its JSON; returns the file."""
    rec = Record(
        "distillation",
        9,
        "Distillation: soft targets alone vs soft targets + hints, + attention transfer",
        cfg.mode,
        argv,
    )
    rec.seeds = sorted(set(cfg.seeds) | set(cfg.lm.seeds))
    rec.budgets = {
        "teacher_epochs": cfg.teacher_epochs,
        "student_epochs (every arm, patience 0)": cfg.student_epochs,
        "lm_parent_steps": cfg.lm.parent_steps,
        "lm_student_steps (every arm)": cfg.lm.steps,
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
    rec.notes.append(f"Default rule: {decision['rule']}.")
    rec.results["attention"] = _attention_transfer(rec, cfg.lm, workdir)
    return rec.write(out_dir)


def _attention_transfer(rec: Record, lm: LMSetting, workdir: Path) -> dict[str, Any]:
    """The language-model comparison: its per-seed results, comparisons, decision, table and
    target (added to ``rec``)."""
    bt = bench_task("tiny_gpt2", lm_train_windows=lm.train_windows, lm_eval_windows=lm.eval_windows)
    assert isinstance(bt.task, LanguageModelTask)
    parent, parent_seconds = pretrain_parent(bt.task, lm)
    parent_scores = {
        "validation": score(parent, bt.task, "validation"),
        "test": score(parent, bt.task, "test"),
        "seconds": parent_seconds,
        "heads": sum(heads_per_layer(parent.gpt2)),
    }
    log.info("[lm] parent test %.4f (%.0f s)", parent_scores["test"], parent_seconds)
    per_seed = {str(seed): run_lm_seed(bt, lm, parent, seed, workdir) for seed in lm.seeds}
    keys = [k for k, _ in lm_arms(lm) if k != "0"]
    comparisons = compare_lm(bt, per_seed, keys)
    decision = decide(
        {"pruned tiny GPT-2": comparisons},
        lm.attention_weights,
        p_key="p_better",
        error_key="nll_arm",
        product_default=DEFAULT_ATTENTION_WEIGHT,
    )
    seeds = list(per_seed.values())
    n_heads = parent_scores["heads"]
    kept = sum(seeds[0]["pruned"]["heads_per_layer"])

    def arm_row(label: str, key: str) -> list[Any]:
        arms = [r["arms"][key] for r in seeds]
        row = [
            label,
            _m([a["test"] for a in arms], 5),
            _m([a["validation"] for a in arms], 5),
        ]
        if key == "0":
            row += ["—", "—", "—", "—"]
        else:
            test = comparisons[key]["test"]
            sm = test["summary"]
            row += [
                _pm(test["perplexity_change"]["values"]),
                f"{sm['wins']} / {sm['ties']} / {sm['losses']}",
                _f(test["p_better"], 2),
                _f(sm["wilcoxon_p_ours_better"], 2),
            ]
        firsts = [a["attention_term_first_steps"] for a in arms]
        row.append(
            f"{_m(firsts, 2)} → {_m([a['attention_term_last_steps'] for a in arms], 2)}"
            if any(v is not None for v in firsts)
            else "—"
        )
        row.append(_m([a["attention_distance_test"] for a in arms], 2))
        return row

    rows: list[list[Any]] = [
        [
            "parent (teacher, unpruned; one for all seeds)",
            _f(parent_scores["test"], 5),
            _f(parent_scores["validation"], 5),
            *(["—"] * 5),
            "0",
        ],
        [
            "pruned, before distillation (incumbent)",
            _m([r["pruned"]["test"] for r in seeds], 5),
            _m([r["pruned"]["validation"] for r in seeds], 5),
            *(["—"] * 5),
            _m([r["pruned"]["attention_distance_test"] for r in seeds], 2),
        ],
        arm_row("labels alone (alpha 0: fine-tuning, no teacher)", "labels"),
        arm_row("soft targets alone (attention_weight 0)", "0"),
        *(
            arm_row(f"soft targets + attention transfer (attention_weight {w:g})", f"{w:g}")
            for w in lm.attention_weights
        ),
    ]
    rec.table(
        f"tiny GPT-2, {n_heads - kept} of {n_heads} heads pruned (gradient importance), taught "
        f"by its unpruned parent: test NLL after {lm.steps} steps (nats/token, median "
        f"[min–max] over {len(seeds)} seeds)",
        [
            "model",
            "test NLL",
            "validation NLL",
            "test perplexity change vs soft targets alone (per seed)",
            "wins / ties / losses vs soft targets alone",
            "p (paired bootstrap, better than soft targets alone)",
            "p (Wilcoxon)",
            "attention term, first → last tenth of the steps",
            "attention distance to the parent (test windows)",
        ],
        rows,
        "Every student row is DistillStrategy.apply from the same pruned model, with the same "
        "seed, batches and steps; only attention_weight (and alpha for the labels row) differs. "
        "The attention term and distance are mean_layers ||a_s - a_t||^2 of head-averaged, "
        "L2-normalised attention maps (0: the parent's maps; at most 4); the distance is "
        f"measured after training on {ATTENTION_WINDOWS} test windows.",
    )
    supported, product = decision["supported_default"], decision["product_default"]
    measured = "; ".join(
        f"attention_weight {w}: median test perplexity change "
        f"{_pct(comparisons[w]['test']['perplexity_change']['median'])}, "
        f"p {_f(comparisons[w]['test']['p_better'], 2)}"
        for w in (f"{x:g}" for x in lm.attention_weights)
    )
    rec.target(
        "Attention transfer kept by default only where it helps: the default attention_weight "
        "is what the measurement supports",
        f"supported default {supported:g}, product default {product:g} ({measured})",
        supported == product,
        ""
        if supported == product
        else "the measured support and the product's default differ: change "
        "DEFAULT_ATTENTION_WEIGHT",
    )
    rec.notes.append(
        "Attention transfer: one parent for all seeds; each seed prunes it by gradient "
        "importance on its own training windows; the students' batches come from the whole "
        "training stream (as the heads strategy fine-tunes), the teacher is chosen on "
        f"training windows, and validation / test are {lm.eval_windows} windows of 64 tokens."
    )
    return {
        "task": bt.description,
        "objective": bt.primary.name,
        "setting": asdict(lm),
        "parent": parent_scores,
        "per_seed": per_seed,
        "comparisons": comparisons,
        "decision": decision,
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:+.2f} %"


def _pm(values: Sequence[float]) -> str:
    """Median [min–max] of relative changes, in percent."""
    s = spread(values)
    if s["median"] is None:
        return "—"
    if s["n"] == 1:
        return _pct(s["median"])
    return f"{_pct(s['median'])} [{_pct(s['min'])} – {_pct(s['max'])}]"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.distillation [--mode quick|full|smoke]``."""
    args, command = runner_args("benchmarks.distillation", __doc__, argv)
    run(Config.for_mode(args.mode), command, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
