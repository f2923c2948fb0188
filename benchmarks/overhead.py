"""Comparison 5: engine overhead and scale. Time spent outside training and evaluation as a
share of a cycle at 10 / 100 / 1000 registered models; memory over many cycles; store writes
per second.

**Overhead**: a fresh home holds N copies of the digits weak start (one trained module
registered under N names). Cycles of :class:`~selfimprove.loop.system.SelfImprovingNeuralSystem`
run with the product's defaults except one experiment per cycle (``max_concurrent_improvements
= 1``, so the phases do not overlap and time adds up). In a cycle, *training* is the time inside
``Strategy.apply`` (the experiments' recorded ``strategy_s``), *evaluation* the time inside
``Evaluator.evaluate`` (observing every incumbent, and judging); the rest is overhead:
planning, the bandit, hormones and triggers, recording measurements, the ledger, checkpoints,
meta-learning. The share is overhead / cycle wall time. Meta-learning (insights every cycle,
the gain model rebuilt and trained every third cycle) is timed separately within the overhead.

**Memory**: two models (digits and neural_sort weak starts), each given a ``train`` task every
cycle (so every cycle runs two experiments), through many cycles with a small budget (1 epoch,
cheap latency timing):
resident memory sampled every ``sample_every`` cycles; flat means it grows by at most 5 %
and by less than 1 MiB per 100 cycles over the second half.

**Store writes**: transactions (every write goes through ``Store.transaction``, or many through
one ``Store.batch``) counted, in every ``Store`` of the process, during
the memory run, per cycle and per second; and the store's own rate for one-row transactions
(``add_event``) on the same disk.

**Ledger size**: cycle time of 10 models with the ledger they made in a few cycles, then with
the ledger grown to 100,000 experiments (copies of its finished experiments, under one extra
model that has no incumbent, so only the ledger grows), and the first cycle of the new process
apart (it reads the ledger once). **Peer**: Optuna's cost per trivial trial with its default
sampler, in memory and on SQLite, in the same run.

Run: ``python -m benchmarks.overhead --mode quick`` (or ``full``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks._common import (
    MODES,
    Record,
    bench_task,
    log,
    runner_args,
    spread,
    weak_start,
)
from selfimprove.config import JudgeConfig, SelfImprovementConfig
from selfimprove.loop.system import SelfImprovingNeuralSystem
from selfimprove.measure.evaluation import Evaluation, Evaluator
from selfimprove.store import Store

__all__ = ["Config", "main", "run"]


@dataclass(frozen=True)
class Config:
    """What one run does.

    Attributes:
        mode: ``full``, ``quick`` or ``smoke``.
        populations: Registered models of each overhead measurement.
        cycles: Cycles measured per population (after one warm-up cycle).
        memory_cycles: Cycles of the memory run.
        sample_every: Cycles between memory samples.
        store_writes: One-row transactions of the store micro-benchmark.
        seed: Base seed.
    """

    mode: str
    populations: tuple[int, ...]
    cycles: int
    memory_cycles: int
    sample_every: int
    store_writes: int
    ledger_experiments: int = 100_000
    optuna_trials: int = 1000
    seed: int = 0

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        if mode == "full":
            return cls(mode, (10, 100, 1000, 10_000), 3, 1000, 10, 2000, 100_000, 1000)
        if mode == "quick":
            return cls(mode, (10, 100, 1000), 1, 150, 10, 500, 20_000, 300)
        if mode == "smoke":
            return cls(mode, (2,), 1, 3, 1, 20, 200, 10)
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}.")


class _TimedEvaluator(Evaluator):
    """The product's evaluator, with the seconds spent in :meth:`evaluate` added up."""

    seconds = 0.0
    calls = 0

    def evaluate(self, *args: Any, **kwargs: Any) -> list[Evaluation]:
        t0 = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def _not_counting() -> None:
    """What stops counting before counting started: nothing."""


def _count_transactions() -> tuple[list[float], Callable[[], None]]:
    """Count the store's transactions from now on, and add up the seconds spent inside them:
    ``[count, seconds]``, and the function that stops counting.

    Every write goes through ``Store.transaction`` or ``Store.batch``; a transaction inside a
    batch is part of the batch's one transaction and is not counted again. Every ``Store`` of
    the process is counted (the system's and the one its engine opens on the same ledger).
    """
    totals = [0.0, 0.0]
    inner_tx, inner_batch = Store.transaction, Store.batch

    def counting(inner: Callable[[Store], Any]) -> Callable[[Store], Any]:
        @contextlib.contextmanager
        def counted(self: Store) -> Iterator[Any]:
            if self.in_batch:  # part of a transaction already counted
                with inner(self) as session:
                    yield session
                return
            totals[0] += 1
            t0 = time.perf_counter()
            try:
                with inner(self) as session:
                    yield session
            finally:
                totals[1] += time.perf_counter() - t0

        return counted

    def stop() -> None:
        Store.transaction = inner_tx  # type: ignore[method-assign]
        Store.batch = inner_batch  # type: ignore[method-assign]

    Store.transaction = counting(inner_tx)  # type: ignore[method-assign,assignment]
    Store.batch = counting(inner_batch)  # type: ignore[method-assign,assignment]
    return totals, stop


def _timed_method(
    obj: Any,
    name: str,
    evaluator: _TimedEvaluator | None = None,
    totals: list[float] | None = None,
) -> list[float]:
    """Add up the seconds spent in ``obj.<name>`` from now on: ``[seconds, of which in the
    evaluator]`` (the second only when ``evaluator`` is given), into ``totals`` when given
    (several methods counted as one phase)."""
    totals = [0.0, 0.0] if totals is None else totals
    inner: Callable[..., Any] = getattr(obj, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        e0 = evaluator.seconds if evaluator is not None else 0.0
        try:
            return inner(*args, **kwargs)
        finally:
            totals[0] += time.perf_counter() - t0
            if evaluator is not None:
                totals[1] += evaluator.seconds - e0

    setattr(obj, name, timed)
    return totals


def _system(
    home: Path, seed: int, config: SelfImprovementConfig, judge: JudgeConfig | None = None
) -> tuple[SelfImprovingNeuralSystem, _TimedEvaluator]:
    shutil.rmtree(home, ignore_errors=True)
    system = SelfImprovingNeuralSystem(home=home, config=config, seed=seed)
    evaluator = _TimedEvaluator(judge or config.judge())
    system.improver.evaluator = evaluator
    system.improver.loop.evaluator = evaluator
    return system, evaluator


def measure_overhead(n: int, cfg: Config, workdir: Path) -> dict[str, Any]:
    """Overhead share of a cycle with ``n`` registered models."""
    bt = bench_task("digits")
    module, _ = weak_start(bt, cfg.seed)
    config = SelfImprovementConfig(auto_start=False, max_concurrent_improvements=1)
    system, evaluator = _system(workdir / f"overhead-{n}", cfg.seed, config)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            system.improver.register_model(f"m{i:04d}", bt.task, module, dict(bt.initial_params))
        register_s = time.perf_counter() - t0
        # Where the time outside training and evaluation goes (instrumented, not changed).
        probes = {
            "observe (less evaluation)": _timed_method(system.cycle, "observe", evaluator),
            "plan": _timed_method(system.cycle.planner, "plan"),
            "meta-learning": _timed_method(system.cycle.learner, "learn_about_learning"),
            "save brain state": _timed_method(system.cycle.learner, "save_brain"),
            "checkpoint writes": _timed_method(system.improver.registry, "save_version"),
            "promote / reject": _timed_method(system.improver.registry, "promote"),
            "experiment start (incumbent loaded, recorded running)": _timed_method(
                system.cycle.loop, "prepare"
            ),
            "brain environment": _timed_method(system.cycle.brain_state, "environment"),
        }
        _timed_method(system.improver.registry, "reject", totals=probes["promote / reject"])
        rows = _time_cycles(system, evaluator, cfg.cycles + 1, probes)
        for r in rows:
            log.info(
                "  %d models, cycle %d: %.1f s, overhead %.1f%% (training %.1f s, evaluation "
                "%.1f s; %d store transactions, %.2f s)",
                n,
                r["cycle"],
                r["wall_s"],
                100 * r["share"],
                r["training_s"],
                r["evaluation_s"],
                r["store_transactions"],
                r["store_transaction_s"],
            )
    finally:
        system.close()
        shutil.rmtree(workdir / f"overhead-{n}", ignore_errors=True)
    measured = [r for r in rows if not r["warm_up"]] or rows
    return {
        "models": n,
        "register_s": register_s,
        "register_per_model_ms": 1e3 * register_s / max(n, 1),
        "share": spread([r["share"] for r in measured]),
        "cycles": rows,
    }


def _grow_ledger(db: Path, target: int) -> int:
    """Copy the ledger's finished experiments (every column but the id) until it holds
    ``target`` experiments, all under one extra model that has no incumbent (so it is neither
    observed nor planned: the ledger grows, the population does not). Written with sqlite3 on
    the store's file while no process has it open. Returns the experiments it then holds."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO models (name, task, family, description, created_at, last_version) "
            "VALUES ('ledger-archive', 'digits', 'digits', 'benchmark: copied experiments', "
            "CURRENT_TIMESTAMP, 0)"
        )
        archive = conn.execute("SELECT id FROM models WHERE name = 'ledger-archive'").fetchone()[0]
        cols = [r[1] for r in conn.execute("PRAGMA table_info(experiments)") if r[1] != "id"]
        picked = ", ".join("?" if c == "model_id" else c for c in cols)
        while (n := conn.execute("SELECT count(*) FROM experiments").fetchone()[0]) < target:
            conn.execute(
                f"INSERT INTO experiments ({', '.join(cols)}) SELECT {picked} FROM experiments "
                "WHERE status IN ('completed', 'failed') LIMIT ?",
                (archive, target - n),
            )
        return int(n)


def measure_ledger(cfg: Config, workdir: Path) -> dict[str, Any]:
    """Cycle time with the ledger as it is after a few cycles, then with
    ``cfg.ledger_experiments`` experiments in it: the same 10 models, the same product
    defaults (one experiment per cycle). The first cycle after the ledger grew (a new process
    reads it once) is reported apart as the catch-up."""
    bt = bench_task("digits")
    module, _ = weak_start(bt, cfg.seed)
    config = SelfImprovementConfig(auto_start=False, max_concurrent_improvements=1)
    home = workdir / "ledger"
    system, evaluator = _system(home, cfg.seed, config)
    for i in range(10):
        system.improver.register_model(f"m{i}", bt.task, module, dict(bt.initial_params))
    cycles = max(cfg.cycles, 3)
    try:
        small = _time_cycles(system, evaluator, cycles + 1, {})[1:]
        before = len(system.store.list_experiments())
    finally:
        system.close()
    held = _grow_ledger(home / "selfimprove.db", cfg.ledger_experiments)
    system = SelfImprovingNeuralSystem(home=home, config=config, seed=cfg.seed)
    evaluator = _TimedEvaluator(config.judge())
    system.improver.evaluator = evaluator
    system.improver.loop.evaluator = evaluator
    try:
        rows = _time_cycles(system, evaluator, cycles + 1, {})
    finally:
        system.close()
        shutil.rmtree(home, ignore_errors=True)
    catch_up, large = rows[0], rows[1:]

    def med(rs: list[dict[str, Any]], key: str) -> float:
        return float(np.median([r[key] for r in rs]))

    return {
        "experiments_small": before,
        "experiments_large": held,
        "cycle_s_small": med(small, "wall_s"),
        "cycle_s_large": med(large, "wall_s"),
        "overhead_s_small": med(small, "overhead_s"),
        "overhead_s_large": med(large, "overhead_s"),
        "ratio": med(large, "wall_s") / med(small, "wall_s"),
        "catch_up_cycle_s": catch_up["wall_s"],
        "cycles": {"small": small, "catch_up": catch_up, "large": large},
    }


def measure_optuna(cfg: Config, workdir: Path) -> dict[str, Any]:
    """Optuna's own cost per trial for trivial trials (an objective that returns at once), with
    its default sampler, in memory and on SQLite: the peer figure for a cycle's overhead."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, Any] = {"trials": cfg.optuna_trials, "sampler": "TPESampler(seed)"}
    db = workdir / "optuna.db"
    db.unlink(missing_ok=True)
    for name, storage in (("in_memory", None), ("sqlite", f"sqlite:///{db}")):
        study = optuna.create_study(
            storage=storage, sampler=optuna.samplers.TPESampler(seed=cfg.seed)
        )
        t0 = time.perf_counter()
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=cfg.optuna_trials)
        out[f"{name}_ms_per_trial"] = 1e3 * (time.perf_counter() - t0) / cfg.optuna_trials
    db.unlink(missing_ok=True)
    return out


def _time_cycles(
    system: SelfImprovingNeuralSystem,
    evaluator: _TimedEvaluator,
    cycles: int,
    probes: dict[str, list[float]],
) -> list[dict[str, Any]]:
    """Run ``cycles`` cycles; each one's wall time, training, evaluation, overhead and the
    probes' seconds (the first is marked as the warm-up)."""
    tx, stop_counting = _count_transactions()
    rows: list[dict[str, Any]] = []
    try:
        for c in range(cycles):
            evaluator.seconds = 0.0
            tx[0] = tx[1] = 0.0
            for p in probes.values():
                p[0] = p[1] = 0.0
            last = max(
                (e.id for e in system.store.list_experiments(newest_first=True, limit=1)), default=0
            )
            t0 = time.perf_counter()
            system.run_cycle_sync()
            wall = time.perf_counter() - t0
            new = system.store.list_experiments(after_id=last)
            train = sum(float(e.durations.get("strategy_s", 0.0)) for e in new)
            over = wall - train - evaluator.seconds
            rows.append(
                {
                    "cycle": c + 1,
                    "warm_up": c == 0,
                    "wall_s": wall,
                    "training_s": train,
                    "evaluation_s": evaluator.seconds,
                    "overhead_s": over,
                    "share": over / wall,
                    "breakdown_s": {k: v[0] - v[1] for k, v in probes.items()},
                    "store_transactions": int(tx[0]),
                    "store_transaction_s": tx[1],
                    "experiments": [f"{e.strategy}:{e.status.value}" for e in new],
                }
            )
    finally:
        stop_counting()
    return rows


def measure_memory(cfg: Config, workdir: Path) -> dict[str, Any]:
    """Resident memory and store transactions over ``memory_cycles`` cycles."""
    config = SelfImprovementConfig(
        auto_start=False, max_concurrent_improvements=2, train_epochs=1, train_seconds=30.0
    )
    judge = JudgeConfig(latency_repeats=5, serving_batch=8, bootstrap_resamples=200)
    system, _ = _system(workdir / "memory", cfg.seed, config, judge)
    proc = psutil.Process()
    stop_counting = _not_counting
    try:
        for key in ("digits", "neural_sort"):
            bt = bench_task(key)
            module, _ = weak_start(bt, cfg.seed)
            system.improver.register_model(key, bt.task, module, dict(bt.initial_params))
        tx, stop_counting = _count_transactions()
        samples = []
        t_start = time.perf_counter()
        last = t_start
        for c in range(1, cfg.memory_cycles + 1):
            # Two experiments every cycle (the planner would stop paying for a model after
            # three rejections in a row: the ledger must keep growing for this measurement).
            for name in ("digits", "neural_sort"):
                system.cycle.planner.enqueue(
                    system.cycle.planner.custom_task(name, strategy="train")
                )
            system.run_cycle_sync(models=["digits", "neural_sort"])
            if c % cfg.sample_every == 0 or c == 1:
                gc.collect()
                now = time.perf_counter()
                samples.append(
                    {
                        "cycle": c,
                        "rss_mib": proc.memory_info().rss / 2**20,
                        "transactions": tx[0],
                        "elapsed_s": now - t_start,
                        "seconds_per_cycle": (now - last) / (cfg.sample_every if c > 1 else 1),
                    }
                )
                last = now
                if c % (cfg.sample_every * 10) == 0:
                    log.info(
                        "  memory run: cycle %d, %.1f MiB, %.2f s/cycle",
                        c,
                        samples[-1]["rss_mib"],
                        samples[-1]["seconds_per_cycle"],
                    )
        wall = time.perf_counter() - t_start
        db = Path(workdir / "memory" / "selfimprove.db")
        db_bytes = sum(p.stat().st_size for p in db.parent.glob("selfimprove.db*"))
        experiments = len(system.store.list_experiments())
    finally:
        stop_counting()
        system.close()
    models_bytes = (
        sum(p.stat().st_size for p in (workdir / "memory").rglob("*") if p.is_file()) - db_bytes
    )
    shutil.rmtree(workdir / "memory", ignore_errors=True)
    half = [s for s in samples if s["cycle"] >= cfg.memory_cycles / 2]
    if len(half) >= 2:
        x = np.array([s["cycle"] for s in half], dtype=float)
        y = np.array([s["rss_mib"] for s in half])
        slope = float(np.polyfit(x, y, 1)[0]) * 100  # MiB per 100 cycles
    else:
        slope = math.nan
    warm = next((s for s in samples if s["cycle"] >= min(100, cfg.memory_cycles // 5)), samples[0])
    growth = samples[-1]["rss_mib"] / warm["rss_mib"] - 1
    return {
        "cycles": cfg.memory_cycles,
        "wall_s": wall,
        "experiments": experiments,
        "rss_start_mib": samples[0]["rss_mib"],
        "rss_after_warm_up_mib": warm["rss_mib"],
        "warm_up_cycle": warm["cycle"],
        "rss_end_mib": samples[-1]["rss_mib"],
        "growth_after_warm_up": growth,
        "slope_second_half_mib_per_100_cycles": slope,
        "flat": bool(growth <= 0.05 and (math.isnan(slope) or slope < 1.0)),
        "transactions": tx[0],
        "transactions_per_cycle": tx[0] / cfg.memory_cycles,
        "transactions_per_second": tx[0] / wall,
        "seconds_per_cycle_first": samples[1]["seconds_per_cycle"] if len(samples) > 1 else None,
        "seconds_per_cycle_last": samples[-1]["seconds_per_cycle"],
        "db_bytes": db_bytes,
        "checkpoint_bytes": models_bytes,
        "samples": samples,
    }


def measure_store(cfg: Config, workdir: Path) -> dict[str, Any]:
    """The store's rate for one-row transactions (``add_event``), SQLite in WAL mode."""
    home = workdir / "store-rate"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    store = Store(None, home=home)
    try:
        t0 = time.perf_counter()
        for i in range(cfg.store_writes):
            store.add_event("benchmark", f"write {i}")
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    shutil.rmtree(home, ignore_errors=True)
    return {
        "writes": cfg.store_writes,
        "seconds": seconds,
        "writes_per_second": cfg.store_writes / seconds,
        "url": "sqlite (WAL) in the home folder, on this machine's disk",
    }


def _f(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{d}g}" if isinstance(v, float) else str(v)


def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path) -> Path:
    """Run comparison 5 and write its JSON; returns the file."""
    rec = Record("overhead", 5, "Engine overhead and scale", cfg.mode, argv)
    rec.seeds = [cfg.seed]
    rec.budgets = {
        "overhead_experiment": "product defaults: 30 epochs, 60 s, one experiment per cycle",
        "memory_experiment": "1 epoch, 30 s, two experiments per cycle",
        "memory_cycles": cfg.memory_cycles,
        "threads": 1,
    }
    rec.settings = {"config": asdict(cfg)}
    workdir.mkdir(parents=True, exist_ok=True)
    overhead = {}
    for n in cfg.populations:
        log.info("overhead with %d models", n)
        overhead[str(n)] = measure_overhead(n, cfg, workdir)
    log.info("memory over %d cycles", cfg.memory_cycles)
    memory = measure_memory(cfg, workdir)
    store = measure_store(cfg, workdir)
    log.info("cycle time with a ledger of %d experiments", cfg.ledger_experiments)
    ledger = measure_ledger(cfg, workdir)
    log.info("Optuna's cost per trivial trial (%d trials)", cfg.optuna_trials)
    optuna_peer = measure_optuna(cfg, workdir)
    rec.results = {
        "overhead": overhead,
        "memory": memory,
        "store": store,
        "ledger": ledger,
        "optuna": optuna_peer,
    }
    rows: list[list[Any]] = []
    parts = list(next(iter(overhead.values()))["cycles"][0]["breakdown_s"])
    for models, r in overhead.items():
        measured = [c for c in r["cycles"] if not c["warm_up"]] or r["cycles"]

        def med(key: str, measured: list[dict[str, Any]] = measured) -> str:
            return _f(float(np.median([c[key] for c in measured])))

        rows.append(
            [
                models,
                _f(r["share"]["median"] * 100, 3) + " %",
                med("wall_s"),
                med("training_s"),
                med("evaluation_s"),
                med("overhead_s"),
                *[_f(float(np.median([c["breakdown_s"][p] for c in measured]))) for p in parts],
                f"{med('store_transactions')} ({med('store_transaction_s')} s)",
                _f(r["register_per_model_ms"]),
                len(measured),
            ]
        )
    rec.table(
        "Time outside training and evaluation, as a share of a cycle (seconds unless stated)",
        [
            "registered models",
            "overhead share",
            "cycle",
            "training",
            "evaluation",
            "overhead",
            *[f"in {p}" for p in parts],
            "store transactions (time)",
            "registration ms/model",
            "cycles measured",
        ],
        rows,
        "Median over the measured cycles (the first cycle, a warm-up, is in the JSON only). "
        "Evaluation includes observing every incumbent (validation, test, latency) each cycle. "
        "The 'in …' columns are parts of the overhead (they overlap the store transactions).",
    )
    m = memory
    rec.table(
        f"Memory and store over {m['cycles']} cycles (two models, two experiments a cycle)",
        [
            "RSS start MiB",
            f"RSS at cycle {m['warm_up_cycle']} MiB",
            "RSS end MiB",
            "growth after warm-up",
            "slope, 2nd half (MiB / 100 cycles)",
            "s/cycle first → last",
            "store transactions / cycle",
            "transactions / s",
            "ledger size",
            "store add_event / s",
        ],
        [
            [
                _f(m["rss_start_mib"], 4),
                _f(m["rss_after_warm_up_mib"], 4),
                _f(m["rss_end_mib"], 4),
                f"{100 * m['growth_after_warm_up']:+.1f} %",
                _f(m["slope_second_half_mib_per_100_cycles"]),
                f"{_f(m['seconds_per_cycle_first'])} → {_f(m['seconds_per_cycle_last'])}",
                _f(m["transactions_per_cycle"]),
                _f(m["transactions_per_second"]),
                f"{m['db_bytes'] / 2**20:.1f} MiB",
                _f(store["writes_per_second"], 4),
            ]
        ],
    )
    lg, op = ledger, optuna_peer
    first = overhead[str(min(cfg.populations))]
    first_meas = [c for c in first["cycles"] if not c["warm_up"]] or first["cycles"]
    ours_ms = 1e3 * float(np.median([c["overhead_s"] for c in first_meas]))
    rec.table(
        "Cycle time as the ledger grows (10 models, one experiment per cycle), and the peer's "
        "cost per trial",
        [
            "experiments in the ledger",
            "cycle s",
            "overhead s",
            "ratio to the small ledger",
            "catch-up cycle s (a new process reads the ledger once)",
        ],
        [
            [
                lg["experiments_small"],
                _f(lg["cycle_s_small"]),
                _f(lg["overhead_s_small"]),
                "1",
                "—",
            ],
            [
                lg["experiments_large"],
                _f(lg["cycle_s_large"]),
                _f(lg["overhead_s_large"]),
                _f(lg["ratio"]),
                _f(lg["catch_up_cycle_s"]),
            ],
        ],
        f"Peer, same run: Optuna {op['sampler']} spends {_f(op['in_memory_ms_per_trial'])} ms "
        f"per trivial trial in memory and {_f(op['sqlite_ms_per_trial'])} ms on SQLite "
        f"({op['trials']} trials); selfimprove spends {_f(ours_ms)} ms outside training and "
        f"evaluation per experiment at {first['models']} models (observing, planning, judging's "
        "bookkeeping, checkpoints, the ledger, meta-learning — work a trial does not do).",
    )
    rec.target(
        "Cycle time with a ledger of 100,000 experiments ≤ 1.2× the small ledger's",
        f"{_f(lg['ratio'])}× with {lg['experiments_large']} experiments",
        bool(lg["ratio"] <= 1.2) if lg["experiments_large"] >= 100_000 else None,
        ""
        if lg["experiments_large"] >= 100_000
        else f"{cfg.mode} mode grew the ledger to {lg['experiments_large']}, not 100,000",
    )
    if "10000" in overhead:
        share10k = overhead["10000"]["share"]["median"]
        meas10k = [c for c in overhead["10000"]["cycles"] if not c["warm_up"]]
        rec.target(
            "Engine overhead ≤ 5 % of a cycle at 10,000 models",
            f"{100 * share10k:.1f} % at 10000 models",
            bool(share10k <= 0.05),
            "" if share10k <= 0.05 else _overhead_why(meas10k),
        )
    largest = str(max(p for p in cfg.populations if p <= 1000))
    share = overhead[largest]["share"]["median"]
    big = overhead[largest]
    meas = [c for c in big["cycles"] if not c["warm_up"]] or big["cycles"]
    rec.target(
        "Engine overhead ≤ 2 % of a cycle at 1000 models",
        f"{100 * share:.1f} % at {largest} models",
        bool(share <= 0.02) if largest == "1000" else None,
        "" if share <= 0.02 else _overhead_why(meas),
    )
    rec.target(
        "Flat memory over 1000 cycles",
        f"{m['cycles']} cycles: {100 * m['growth_after_warm_up']:+.1f} % after cycle "
        f"{m['warm_up_cycle']}, slope "
        f"{_f(m['slope_second_half_mib_per_100_cycles'])} MiB / 100 cycles in the second half",
        m["flat"] if m["cycles"] >= 1000 else None,
        "; ".join(
            x
            for x in (
                "" if m["flat"] else "resident memory keeps growing (samples in the JSON)",
                ""
                if m["cycles"] >= 1000
                else f"{cfg.mode} mode ran {m['cycles']} cycles, not 1000: not a measurement "
                "of the target",
                f"a cycle took {_f(m['seconds_per_cycle_first'])} s early and "
                f"{_f(m['seconds_per_cycle_last'])} s at the end (the ledger grows)",
            )
            if x
        ),
    )
    return rec.write(out_dir)


def _overhead_why(cycles: Sequence[dict[str, Any]]) -> str:
    """Where the overhead went, largest part first, from the measured breakdown."""
    wall = float(np.median([c["wall_s"] for c in cycles]))
    over = float(np.median([c["overhead_s"] for c in cycles]))
    parts = {
        k: float(np.median([c["breakdown_s"][k] for c in cycles])) for k in cycles[0]["breakdown_s"]
    }
    ranked = sorted(parts.items(), key=lambda kv: -kv[1])
    tx = float(np.median([c["store_transactions"] for c in cycles]))
    tx_s = float(np.median([c["store_transaction_s"] for c in cycles]))
    listed = ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in ranked if v >= 0.0005)
    rest = over - sum(parts.values())
    return (
        f"of a {wall:.2f} s cycle, {1e3 * over:.0f} ms is outside training and evaluation: "
        f"{listed}, the rest {1e3 * max(rest, 0.0):.0f} ms (the experiment's ledger rows and "
        f"events, recovery, thread hand-offs); {tx:.0f} store transactions took "
        f"{1e3 * tx_s:.0f} ms of it. The largest part is where the next work should start."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.overhead [--mode quick|full|smoke]``."""
    args, command = runner_args("benchmarks.overhead", __doc__, argv)
    run(Config.for_mode(args.mode), command, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
