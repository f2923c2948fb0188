"""Comparison 2: two objectives (error x latency). Hypervolume of the engine's Pareto set, made
with all its strategies, vs Optuna NSGA-II over the architecture alone, at equal budget.

**Engine**: from the task's default model (its default architecture trained with the plain
recipe; those epochs are charged to the engine's budget), one judged experiment after another
through ``SelfImprover.improve`` (the planner would not schedule optimisation here: it waits for
a batch-1 latency above 200 ms, and these models run in well under 1 ms), sharing the rest of
the epoch budget: ``evolve`` for accuracy (45 %), ``evolve`` for latency (25 %), ``prune`` for
latency (10 %), ``quantize`` (no training), ``distill`` for latency (20 %, the earlier
incumbents teach). Its set of models is every version it made (promoted and rejected candidates
alike: all were measured and kept), not the starting model it was given; the promoted lineage
alone is reported too.

**NSGA-II**: ``optuna.samplers.NSGAIISampler`` (seeded) over the architecture space alone
(``MLP_SPACE``: width, depth, activation, dropout), every trial trained from scratch with the
training ``evolve`` uses (Adam, lr 3e-3, batch 64, early stopping with patience 5, at most
``trial_epochs``), told (validation error, batch-1 latency timed on one thread against a fixed
reference model so that drift cancels). Its set of models is every complete trial.

**Measurement**: all models of both methods timed in one session, interleaved (one thread,
warm-up, median of repeats, batch 1 and batch 64). Each set's Pareto front is chosen on
validation error x batch-1 latency; the test split is scored once per front member. The
hypervolume (both coordinates minimised) is bounded by a reference point 10 % beyond the worst
error and the worst latency of the two fronts together (per seed, so both are measured against
the same point); it is reported on test (the figure) and on validation.

Run: ``python -m benchmarks.two_objectives --mode quick`` (or ``full``).
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from benchmarks._common import (
    MODES,
    BenchTask,
    Record,
    bench_task,
    describe_space,
    error_of,
    hypervolume_2d,
    latency_profiles,
    log,
    paired_summary,
    pareto_front,
    run_trial,
    runner_args,
    score,
    spread,
)
from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.runtime import time_batch1
from selfimprove.objectives import Direction, Objective
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.store import ExperimentStatus
from selfimprove.strategies import Budget
from selfimprove.tasks import MLP_SPACE

__all__ = ["ENGINE_PLAN", "Config", "main", "run"]

MODEL = "bench_pareto"
#: The sets whose fronts fix the reference point (the lineage is a subset of the engine's).
REFERENCE_SETS = ("engine", "nsga2")
#: The engine's experiments: (strategy, objective, share of the budget).
ENGINE_PLAN: tuple[tuple[str, str | None, float], ...] = (
    ("evolve", None, 0.45),
    ("evolve", "latency_ms", 0.25),
    ("prune", "latency_ms", 0.10),
    ("quantize", "latency_ms", 0.0),
    ("distill", "latency_ms", 0.20),
)


@dataclass(frozen=True)
class Config:
    """What one run does.

    Attributes:
        mode: ``full``, ``quick`` or ``smoke``.
        tasks: Task keys.
        seeds: Seeds (paired).
        budget_epochs: Total training epochs per method, task and seed.
        trial_epochs: NSGA-II's per-trial epoch cap.
        population: NSGA-II's population size.
        latency_repeats: Timed repeats per model in the final session.
        engine_seconds: The engine's seconds budget per experiment.
    """

    mode: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    budget_epochs: int
    trial_epochs: int
    population: int
    latency_repeats: int
    engine_seconds: float

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        if mode == "full":
            return cls(mode, ("digits", "neural_sort"), (0, 1, 2, 3, 4), 200, 10, 8, 60, 180.0)
        if mode == "quick":
            return cls(mode, ("digits",), (0,), 200, 10, 8, 30, 120.0)
        if mode == "smoke":
            return cls(mode, ("digits",), (0,), 8, 2, 2, 5, 60.0)
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}.")


# ---------------------------------------------------------------------- engine
#: How the engine's starting model is trained (its epochs count against the engine's budget).
START_RECIPE: dict[str, Any] = {"epochs": 20, "lr": 1e-3, "patience": 5}


def run_engine(bt: BenchTask, seed: int, cfg: Config, workdir: Path) -> dict[str, Any]:
    """The engine's plan (:data:`ENGINE_PLAN`) from the default model; every version made."""
    t0 = time.perf_counter()
    s0 = derive_seed("bench", "pareto", "start", bt.key, seed)
    params = bt.task.default_params()
    with torch_seeded(s0):
        module = bt.task.build(params)
    start = train_(module, bt.task, TrainConfig(seed=s0, **START_RECIPE))
    home = workdir / f"pareto-{bt.key}-{seed}"
    shutil.rmtree(home, ignore_errors=True)
    config = SelfImprovementConfig(
        auto_start=False, backups_kept=50, train_seconds=cfg.engine_seconds
    )
    spent = start.epochs_run
    experiments = []
    with SelfImprover(home, config=config, seed=seed) as si:
        si.register_model(MODEL, bt.task, module, params)
        rest = max(1, cfg.budget_epochs - spent)
        for strategy, objective, share in ENGINE_PLAN:
            epochs = max(1, round(share * rest))
            if share > 0:
                epochs = min(epochs, max(1, cfg.budget_epochs - spent))
            out = si.improve(
                MODEL,
                strategy,
                objective=objective,
                budget=Budget(epochs=epochs, seconds=cfg.engine_seconds),
            )
            used = 0
            if out.experiment_id is not None:
                exp = si.store.get_experiment(out.experiment_id)
                used = (
                    int(exp.compute.get("epochs", 0))
                    if exp.status is ExperimentStatus.COMPLETED
                    else epochs
                )
            spent += used
            experiments.append(
                {
                    "strategy": strategy,
                    "objective": out.objective,
                    "status": out.status,
                    "decision": out.decision.value if out.decision else None,
                    "epochs": used,
                    "reason": out.reason[:200],
                }
            )
            log.info("  engine %s/%s: %s %s", strategy, out.objective, out.status, out.reason[:90])
        model = si.store.get_model(MODEL)
        versions = []
        for v in si.store.list_versions(model.id):
            if v.number == 1:  # the model it was given, not one it made
                continue
            try:
                m = si.registry.load_module(model, v, bt.task)
            except Exception as exc:  # weights pruned by retention: say so, do not guess
                log.warning("  version %d not loadable: %s", v.number, exc)
                continue
            versions.append(
                {
                    "label": f"v{v.number} {v.strategy}",
                    "status": v.status.value,
                    "promoted_lineage": v.status.value in ("incumbent", "backup"),
                    "params": dict(v.params),
                    "module": m,
                }
            )
    shutil.rmtree(home, ignore_errors=True)
    return {
        "epochs": spent,
        "start_epochs": start.epochs_run,
        "seconds": time.perf_counter() - t0,
        "experiments": experiments,
        "models": versions,
    }


# ---------------------------------------------------------------------- NSGA-II
def run_nsga2(bt: BenchTask, seed: int, cfg: Config) -> dict[str, Any]:
    """Optuna NSGA-II over the architecture alone, told (validation error, batch-1 latency)."""
    import optuna

    t0 = time.perf_counter()
    task, primary = bt.task, bt.primary
    sampler = optuna.samplers.NSGAIISampler(
        seed=derive_seed("bench", "nsga2", bt.key, seed) % 2**32, population_size=cfg.population
    )
    study = optuna.create_study(
        directions=["minimize", "minimize"],
        sampler=sampler,
        study_name=f"bench-nsga2-{bt.key}-{seed}",
    )
    x1 = task.example_input(1)
    with torch_seeded(0):
        ref = task.build(task.default_params())  # fixed reference: timings are rescaled by it
    (ref_first,) = time_batch1([ref], x1, 2 * cfg.latency_repeats)
    ref_ms = float(np.median(ref_first))
    spent = 0
    models = []
    trials = []
    training = {"lr": 3e-3, "batch_size": 64, "schedule": "plateau", "weight_decay": 0.0}
    while spent < cfg.budget_epochs:
        cap = min(cfg.trial_epochs, cfg.budget_epochs - spent)
        trial = study.ask()
        params = {**task.default_params(), **{n: p.suggest(trial, n) for n, p in MLP_SPACE.items()}}
        tseed = derive_seed("bench", "nsga2", bt.key, seed, "trial", trial.number)
        with torch_seeded(tseed):
            module = task.build(params)
        out = run_trial(module, task, training, epochs=cap, seed=tseed, optimizer="adam")
        spent += out.epochs
        if out.state != "complete":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            trials.append([trial.number, out.state, out.epochs, None, None])
            continue
        t_trial, t_ref = time_batch1([module, ref], x1, cfg.latency_repeats)
        latency = float(np.median(t_trial) / np.median(t_ref) * ref_ms)
        err = error_of(primary, out.validation)
        study.tell(trial, [err, latency])
        trials.append([trial.number, "complete", out.epochs, err, latency])
        models.append(
            {
                "label": f"trial {trial.number}",
                "status": "trial",
                "promoted_lineage": False,
                "params": params,
                "module": module,
            }
        )
    return {
        "epochs": spent,
        "seconds": time.perf_counter() - t0,
        "trials": trials,
        "models": models,
    }


# ---------------------------------------------------------------------- measurement
def measure(
    bt: BenchTask, sets: Mapping[str, list[dict[str, Any]]], repeats: int
) -> dict[str, Any]:
    """Time every model of every set in one interleaved session; Pareto fronts on validation;
    test scored once per front member; hypervolumes against one reference point."""
    task, primary = bt.task, bt.primary
    flat = [(name, i) for name, models in sets.items() for i in range(len(models))]
    modules: list[nn.Module] = [sets[n][i]["module"] for n, i in flat]
    profiles = latency_profiles(modules, task, repeats=repeats)
    points: dict[str, list[dict[str, Any]]] = {n: [] for n in sets}
    for (name, i), prof in zip(flat, profiles, strict=True):
        m = sets[name][i]
        points[name].append(
            {
                "label": m["label"],
                "status": m["status"],
                "promoted_lineage": m["promoted_lineage"],
                "params": m["params"],
                "validation_error": error_of(primary, score(m["module"], task, "validation")),
                "latency_ms": prof["batch1_ms"],
                "serving_latency_ms": prof["serving_ms"],
                "parameters": sum(p.numel() for p in m["module"].parameters()),
                "module": m["module"],
            }
        )
    fronts: dict[str, list[dict[str, Any]]] = {}
    for name, pts in points.items():
        idx = pareto_front([(p["validation_error"], p["latency_ms"]) for p in pts])
        front = [pts[i] for i in idx]
        for p in front:
            p["test_error"] = error_of(primary, score(p["module"], task, "test"))
        fronts[name] = sorted(front, key=lambda p: p["latency_ms"])
    union = [p for name, f in fronts.items() if name in REFERENCE_SETS for p in f]
    out: dict[str, Any] = {"sets": {}, "reference": {}}
    for split in ("test", "validation"):
        key = f"{split}_error"
        ref = (
            1.1 * max((p[key] for p in union), default=1.0),
            1.1 * max((p["latency_ms"] for p in union), default=1.0),
        )
        out["reference"][split] = {"error": ref[0], "latency_ms": ref[1]}
        for name, front in fronts.items():
            hv = hypervolume_2d([(p[key], p["latency_ms"]) for p in front], ref)
            out["sets"].setdefault(name, {})[f"hypervolume_{split}"] = hv
    for name, pts in points.items():
        out["sets"][name]["models"] = len(pts)
        out["sets"][name]["front"] = [
            {k: v for k, v in p.items() if k != "module"} for p in fronts[name]
        ]
        out["sets"][name]["all"] = [
            [p["label"], p["validation_error"], p["latency_ms"]] for p in pts
        ]
        for p in pts:
            p.pop("module", None)
    return out


# ---------------------------------------------------------------------- run
def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path) -> Path:
    """Run comparison 2 and write its JSON; returns the file."""
    rec = Record("two_objectives", 2, "Two objectives: error x latency", cfg.mode, argv)
    rec.seeds = list(cfg.seeds)
    rec.budgets = {
        "epochs": cfg.budget_epochs,
        "nsga2_trial_cap": cfg.trial_epochs,
        "engine_plan": [
            {"strategy": s, "objective": o or "primary", "share": f} for s, o, f in ENGINE_PLAN
        ],
        "threads": 1,
    }
    rec.settings = {
        "config": asdict(cfg),
        "nsga2_space": describe_space(MLP_SPACE),
        "nsga2_training": "adam, lr 3e-3, batch 64, plateau, patience 5 (evolve's defaults)",
        "reference_point": "1.1 x (worst error, worst latency) over both fronts, per seed",
        "latency": f"one thread, interleaved, median of {cfg.latency_repeats} repeats",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    per_task: dict[str, Any] = {}
    for key in cfg.tasks:
        bt = bench_task(key)
        seeds: dict[str, Any] = {}
        for seed in cfg.seeds:
            log.info("[%s seed %d] engine", key, seed)
            engine = run_engine(bt, seed, cfg, workdir)
            log.info("[%s seed %d] nsga2", key, seed)
            nsga = run_nsga2(bt, seed, cfg)
            lineage = [m for m in engine["models"] if m["promoted_lineage"]]
            measured = measure(
                bt,
                {"engine": engine["models"], "nsga2": nsga["models"], "engine_lineage": lineage},
                cfg.latency_repeats,
            )
            for r in (engine, nsga):
                r.pop("models")
            s = measured["sets"]
            log.info(
                "[%s seed %d] hypervolume on test: engine %.4g, NSGA-II %.4g",
                key,
                seed,
                s["engine"]["hypervolume_test"],
                s["nsga2"]["hypervolume_test"],
            )
            seeds[str(seed)] = {"engine": engine, "nsga2": nsga, "measured": measured}
        per_task[key] = _summarise(bt, seeds)
    rec.results = {"tasks": per_task}
    _report(rec, per_task)
    return rec.write(out_dir)


def _summarise(bt: BenchTask, seeds: Mapping[str, Any]) -> dict[str, Any]:
    ratio_test: list[float] = []
    ratio_val: list[float] = []
    for r in seeds.values():
        s = r["measured"]["sets"]
        for split, acc in (("test", ratio_test), ("validation", ratio_val)):
            theirs = s["nsga2"][f"hypervolume_{split}"]
            acc.append(s["engine"][f"hypervolume_{split}"] / theirs if theirs > 0 else math.inf)
    hv = {
        m: spread([r["measured"]["sets"][m]["hypervolume_test"] for r in seeds.values()])
        for m in ("engine", "engine_lineage", "nsga2")
    }
    return {
        "description": bt.description,
        "hypervolume_test": hv,
        "ratio_test": spread(ratio_test),
        "ratio_validation": spread(ratio_val),
        "epochs": {
            m: spread([r[m]["epochs"] for r in seeds.values()]) for m in ("engine", "nsga2")
        },
        "seconds": {
            m: spread([r[m]["seconds"] for r in seeds.values()]) for m in ("engine", "nsga2")
        },
        "best_test_error": {m: spread(_ends(seeds, m, "test_error")) for m in ("engine", "nsga2")},
        "fastest_ms": {m: spread(_ends(seeds, m, "latency_ms")) for m in ("engine", "nsga2")},
        "models": {
            m: spread([r["measured"]["sets"][m]["models"] for r in seeds.values()])
            for m in ("engine", "nsga2")
        },
        "paired_best_error": paired_summary(
            [1 - e for e in _ends(seeds, "engine", "test_error")],
            [1 - e for e in _ends(seeds, "nsga2", "test_error")],
            _ACCURACY_LIKE,
        ),
        "per_seed": dict(seeds),
    }


def _ends(seeds: Mapping[str, Any], method: str, key: str) -> list[float]:
    """Per seed, the lowest ``key`` on ``method``'s front (NaN for an empty front)."""
    return [
        min((p[key] for p in r["measured"]["sets"][method]["front"]), default=math.nan)
        for r in seeds.values()
    ]


#: Paired comparisons of error values through ``1 - error`` (a maximised, accuracy-like form).
_ACCURACY_LIKE = Objective("one_minus_error", Direction.MAXIMIZE, ideal=1.0)


def _f(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{d}g}" if isinstance(v, float) else str(v)


def _m(s: Mapping[str, Any], d: int = 3) -> str:
    if not s or s.get("median") is None:
        return "—"
    if s["n"] == 1:
        return _f(s["median"], d)
    return f"{_f(s['median'], d)} [{_f(s['min'], d)}–{_f(s['max'], d)}]"


def _report(rec: Record, per_task: Mapping[str, Any]) -> None:
    rows = []
    for key, t in per_task.items():
        rows.append(
            [
                key,
                _m(t["hypervolume_test"]["engine"], 4),
                _m(t["hypervolume_test"]["engine_lineage"], 4),
                _m(t["hypervolume_test"]["nsga2"], 4),
                _m(t["ratio_test"]),
                _m(t["ratio_validation"]),
                f"{_m(t['epochs']['engine'])} / {_m(t['epochs']['nsga2'])}",
                f"{_m(t['seconds']['engine'])} / {_m(t['seconds']['nsga2'])}",
            ]
        )
    rec.table(
        "Hypervolume of (error, batch-1 latency), fronts chosen on validation, test scored once",
        [
            "task",
            "engine (all its models)",
            "engine (promoted lineage)",
            "NSGA-II",
            "engine / NSGA-II (test)",
            "engine / NSGA-II (validation)",
            "epochs engine / NSGA-II",
            "seconds engine / NSGA-II",
        ],
        rows,
        "Error = 1 − accuracy (digits) or MSE; latency in ms at batch 1, one thread, all models "
        "timed interleaved in one session; reference point 10 % beyond the worst of both fronts.",
    )
    rows = []
    for key, t in per_task.items():
        rows.append(
            [
                key,
                _m(t["best_test_error"]["engine"], 4),
                _m(t["best_test_error"]["nsga2"], 4),
                _m(t["fastest_ms"]["engine"], 3),
                _m(t["fastest_ms"]["nsga2"], 3),
            ]
        )
    rec.table(
        "Ends of the fronts: lowest test error and fastest batch-1 latency (ms)",
        [
            "task",
            "engine lowest error",
            "NSGA-II lowest error",
            "engine fastest",
            "NSGA-II fastest",
        ],
        rows,
    )
    for key, t in per_task.items():
        first = next(iter(t["per_seed"].values()))
        rows = []
        for name in ("engine", "nsga2"):
            for p in first["measured"]["sets"][name]["front"]:
                rows.append(
                    [
                        name,
                        p["label"],
                        _f(p["validation_error"], 4),
                        _f(p["test_error"], 4),
                        _f(p["latency_ms"], 3),
                        _f(p["serving_latency_ms"], 3),
                        p["parameters"],
                    ]
                )
        rows += [
            [
                "engine experiment",
                e["strategy"],
                e["objective"],
                e["status"],
                e["decision"] or "—",
                e["epochs"],
                e["reason"][:80],
            ]
            for e in first["engine"]["experiments"]
        ]
        rec.table(
            f"{key}, seed {next(iter(t['per_seed']))}: the two fronts and the engine's experiments",
            [
                "set",
                "model",
                "validation error",
                "test error",
                "batch-1 ms",
                "batch-64 ms",
                "parameters",
            ],
            rows,
        )
    ratios = [
        t["ratio_test"]["median"]
        for t in per_task.values()
        if t["ratio_test"]["median"] is not None
    ]
    if ratios:
        med = float(np.median(ratios))
        rec.target(
            "Hypervolume ≥ 1.2 × NSGA-II's",
            f"{med:.3g} × (median over tasks of the per-task median over seeds; on test)",
            bool(med >= 1.2),
            "" if med >= 1.2 else _hv_why(per_task),
        )


def _hv_why(per_task: Mapping[str, Any]) -> str:
    """What the measurements say about a hypervolume shortfall."""
    parts = []
    for key, t in per_task.items():
        decisions = Counter(
            f"{e['strategy']}:{e['decision'] or e['status']}"
            for r in t["per_seed"].values()
            for e in r["engine"]["experiments"]
        )
        parts.append(
            f"{key}: the engine made {_m(t['models']['engine'])} models against NSGA-II's "
            f"{_m(t['models']['nsga2'])}; lowest test error {_m(t['best_test_error']['engine'], 3)}"
            f" vs {_m(t['best_test_error']['nsga2'], 3)}, fastest "
            f"{_m(t['fastest_ms']['engine'], 3)} vs {_m(t['fastest_ms']['nsga2'], 3)} ms; its "
            "experiments: " + ", ".join(f"{k} ×{v}" for k, v in sorted(decisions.items()))
        )
    return (
        "; ".join(parts)
        + ". evolve keeps only the one point it chose from its own front, and each "
        "experiment yields one model. Next: keep evolve's front as candidate versions, and let "
        "prune / quantize / distill start from each point of it."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.two_objectives [--mode quick|full|smoke]``."""
    args, command = runner_args("benchmarks.two_objectives", __doc__, argv)
    run(Config.for_mode(args.mode), command, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
