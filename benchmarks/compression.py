"""Comparison 4: compression. Per strategy (quantize, prune, distill): latency speed-up at
batch 1 and at a serving batch, size reduction, accuracy change; beside each, the speed-up of an
equivalent hand-made smaller model (the same final architecture, dense, trained from scratch on
the labels for the same epochs) as the practical limit.

Each strategy runs as one judged experiment (``SelfImprover.improve``) on the same base model,
a well-trained MLP registered in a fresh home per strategy (so one strategy's promotion does not
change another's starting point): ``quantize`` and ``prune`` with objective ``latency_ms`` on
the base itself; ``distill`` through the product's route to a small distilled model, since it
only distils from a teacher that beats the incumbent and nothing beats the base: a fresh
half-width student is registered beside the base and distilled from it (see ``_apply``). The
candidate is measured whether the judge promoted it or not; the decision and its reason are
recorded.

All models of one seed are timed in one session (one thread, warm-up, interleaved repeats,
median), at batch 1 and at batch 64. Size is the checkpoint's bytes (safetensors).

Run: ``python -m benchmarks.compression --mode quick`` (or ``full``).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from benchmarks._common import (
    MODES,
    BenchTask,
    Record,
    bench_task,
    error_of,
    latency_profiles,
    log,
    runner_args,
    score,
    spread,
)
from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.modules import arch_params, checkpoint_bytes, module_state
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies import Budget
from selfimprove.strategies._distill import smaller_params

__all__ = ["STRATEGIES", "Config", "main", "run"]

STRATEGIES = ("quantize", "prune", "distill")
MODEL = "bench_base"
STUDENT = "bench_student"


@dataclass(frozen=True)
class Config:
    """What one run does.

    Attributes:
        mode: ``full``, ``quick`` or ``smoke``.
        tasks: Task keys.
        seeds: Seeds (each trains its own base model).
        base_params: Architecture of the base model.
        base_epochs: Its training epochs.
        finetune_epochs: Epoch budget of ``prune`` and ``distill`` (and of the hand-made models).
        latency_repeats: Timed repeats per model and batch size.
        serving_batch: The serving batch size timed beside batch 1.
    """

    mode: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    base_params: dict[str, Any]
    base_epochs: int
    finetune_epochs: int
    latency_repeats: int
    serving_batch: int

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        base = {"width": 512, "depth": 2, "activation": "relu", "dropout": 0.0}
        if mode == "full":
            return cls(mode, ("digits", "neural_sort"), (0, 1, 2, 3, 4), base, 30, 20, 200, 64)
        if mode == "quick":
            return cls(mode, ("digits",), (0,), base, 15, 10, 60, 64)
        if mode == "smoke":
            small = {"width": 32, "depth": 2, "activation": "relu", "dropout": 0.0}
            return cls(mode, ("digits",), (0,), small, 2, 2, 5, 8)
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}.")


def _trained(bt: BenchTask, params: Mapping[str, Any], epochs: int, seed: int) -> nn.Module:
    with torch_seeded(seed):
        module = bt.task.build(params)
    train_(module, bt.task, TrainConfig(epochs=epochs, lr=1e-3, seed=seed, patience=5))
    module.eval()
    return module


def _apply(
    bt: BenchTask,
    strategy: str,
    base: nn.Module,
    seed: int,
    cfg: Config,
    workdir: Path,
) -> dict[str, Any]:
    """One judged experiment of ``strategy`` in a fresh home; the candidate module.

    ``quantize`` and ``prune`` work on the base model itself (objective ``latency_ms``).
    ``distill`` cannot: the product distils only from a teacher that beats the incumbent, and
    nothing beats the base here, so the product's own route to a distilled small model is
    taken: the small student architecture (``smaller_params`` of the base: half the width) is
    registered as a model of its own, freshly initialised, beside the base as a second model
    of the task, and ``distill`` improves the student's accuracy with the base as teacher
    (Hinton et al.'s setting).
    """
    home = workdir / f"compress-{bt.key}-{strategy}-{seed}"
    shutil.rmtree(home, ignore_errors=True)
    config = SelfImprovementConfig(auto_start=False, backups_kept=10, train_seconds=300.0)
    t0 = time.perf_counter()
    with SelfImprover(home, config=config, seed=seed) as si:
        si.register_model(MODEL, bt.task, base, dict(cfg.base_params))
        target, objective = MODEL, "latency_ms"
        if strategy == "distill":
            small = smaller_params(cfg.base_params)
            if small is None:
                return {"status": "not_run", "reason": f"no smaller params for {cfg.base_params}"}
            with torch_seeded(derive_seed("bench", "student", seed)):
                student = bt.task.build(small)
            si.register_model(STUDENT, bt.task, student, small)
            target, objective = STUDENT, bt.primary.name
        out = si.improve(
            target,
            strategy,
            objective=objective,
            budget=Budget(epochs=max(1, cfg.finetune_epochs), seconds=300.0),
        )
        result: dict[str, Any] = {
            "model": target,
            "objective": objective,
            "status": out.status,
            "decision": out.decision.value if out.decision else None,
            "reason": out.reason,
            "seconds": time.perf_counter() - t0,
        }
        if out.experiment_id is not None:
            exp = si.store.get_experiment(out.experiment_id)
            result["epochs"] = exp.compute.get("epochs")
            if exp.candidate_version_id is not None:
                model = si.store.get_model(target)
                version = si.store.version_by_id(exp.candidate_version_id)
                result["params"] = dict(version.params)
                result["module"] = si.registry.load_module(model, version, bt.task)
    shutil.rmtree(home, ignore_errors=True)
    return result


def run_seed(bt: BenchTask, seed: int, cfg: Config, workdir: Path) -> dict[str, Any]:
    """Base model, the three strategies, their hand-made equivalents, one timing session."""
    s = derive_seed("bench", "compression", bt.key, seed)
    base = _trained(bt, cfg.base_params, cfg.base_epochs, s)
    models: dict[str, nn.Module] = {"base": base}
    runs: dict[str, Any] = {}
    for strategy in STRATEGIES:
        log.info("[%s seed %d] %s", bt.key, seed, strategy)
        r = _apply(bt, strategy, base, seed, cfg, workdir)
        module = r.pop("module", None)
        runs[strategy] = r
        if module is None:
            continue
        models[strategy] = module
        arch = arch_params(r["params"])
        if arch != arch_params(cfg.base_params):  # a smaller architecture: build it by hand
            models[f"hand-made ({strategy})"] = _trained(
                bt, arch, cfg.finetune_epochs, derive_seed(s, "hand", strategy)
            )
            runs[strategy]["hand_made_params"] = arch
    names = list(models)
    profiles = latency_profiles(
        [models[n] for n in names],
        bt.task,
        repeats=cfg.latency_repeats,
        serving_batch=cfg.serving_batch,
    )
    measured: dict[str, Any] = {}
    primary = bt.primary
    for name, prof in zip(names, profiles, strict=True):
        m = models[name]
        measured[name] = {
            "validation": score(m, bt.task, "validation"),
            "test": score(m, bt.task, "test"),
            "batch1_ms": prof["batch1_ms"],
            "serving_ms": prof["serving_ms"],
            "size_bytes": checkpoint_bytes(m),
            # int8 layers hold packed weights, not nn.Parameters: count the stored elements.
            "parameters": sum(p.numel() for p in m.parameters())
            or sum(
                t.numel() for k, t in module_state(m).items() if k.endswith(("weight", "_int8"))
            ),
        }
    b = measured["base"]
    for v in measured.values():
        v["speedup_batch1"] = b["batch1_ms"] / v["batch1_ms"]
        v["speedup_serving"] = b["serving_ms"] / v["serving_ms"]
        v["size_ratio"] = v["size_bytes"] / b["size_bytes"]
        v["test_error_change"] = error_of(primary, v["test"]) - error_of(primary, b["test"])
        v["validation_error_change"] = error_of(primary, v["validation"]) - error_of(
            primary, b["validation"]
        )
    return {"experiments": runs, "measured": measured}


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


def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path) -> Path:
    """Run comparison 4 and write its JSON; returns the file."""
    rec = Record("compression", 4, "Compression: quantize, prune, distill", cfg.mode, argv)
    rec.seeds = list(cfg.seeds)
    rec.budgets = {
        "base_epochs": cfg.base_epochs,
        "finetune_epochs": cfg.finetune_epochs,
        "hand_made_epochs": cfg.finetune_epochs,
        "threads": 1,
    }
    rec.settings = {
        "config": asdict(cfg),
        "objective": "latency_ms (each strategy's judged experiment)",
        "latency": f"one thread, interleaved, median of {cfg.latency_repeats} repeats, "
        f"batch 1 and batch {cfg.serving_batch}",
        "distill": "the base teaches a fresh half-width student registered beside it "
        "(objective: the student's accuracy); see _apply",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    per_task: dict[str, Any] = {}
    for key in cfg.tasks:
        bt = bench_task(key)
        seeds = {str(seed): run_seed(bt, seed, cfg, workdir) for seed in cfg.seeds}
        per_task[key] = {
            "description": bt.description,
            "objective": bt.primary.name,
            "per_seed": seeds,
        }
    rec.results = {"tasks": per_task}
    for key, t in per_task.items():
        rows = []
        names: list[str] = []
        for r in t["per_seed"].values():
            names += [n for n in r["measured"] if n not in names]
        for name in names:
            vals = [r["measured"][name] for r in t["per_seed"].values() if name in r["measured"]]
            strategy = name if name in STRATEGIES else None
            decisions = (
                ", ".join(
                    sorted(
                        {
                            str(
                                r["experiments"][strategy]["decision"]
                                or r["experiments"][strategy]["status"]
                            )
                            for r in t["per_seed"].values()
                        }
                    )
                )
                if strategy
                else "—"
            )
            rows.append(
                [
                    name,
                    _m([v["speedup_batch1"] for v in vals]),
                    _m([v["speedup_serving"] for v in vals]),
                    _m([v["size_ratio"] for v in vals]),
                    _m([v["parameters"] for v in vals], 4),
                    _m([v["test"] for v in vals], 4),
                    _m([v["test_error_change"] for v in vals], 3),
                    _m([v["batch1_ms"] for v in vals], 3),
                    decisions,
                ]
            )
        rec.table(
            f"{key}: compression of a {cfg.base_params['width']}×{cfg.base_params['depth']} MLP "
            f"(median [min–max] over seeds)",
            [
                "model",
                "speed-up batch 1",
                f"speed-up batch {cfg.serving_batch}",
                "size (× base)",
                "parameters",
                f"test {t['objective']}",
                "test error change",
                "batch-1 ms",
                "judge",
            ],
            rows,
            "Speed-ups are base time / model time, from one interleaved session per seed. A "
            "hand-made model has the strategy's final architecture, trained from scratch on the "
            "labels for the same epochs: its speed-up is the practical limit of that size.",
        )
    rec.notes.append(
        "quantize keeps the architecture, so it has no hand-made equivalent; its speed-up "
        "comes from int8 matrix products (dynamic quantization of nn.Linear)."
    )
    return rec.write(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.compression [--mode quick|full|smoke]``."""
    args, command = runner_args("benchmarks.compression", __doc__, argv)
    run(Config.for_mode(args.mode), command, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
