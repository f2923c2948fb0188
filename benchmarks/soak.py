"""Reliability soak: many processes on one store, and kill -9 at random moments.

Two experiments, each on real subprocesses of the ``selfimprove`` command line:

- **Concurrency.** ``procs`` processes of ``selfimprove run --cycles C`` at once on one new
  store, repeated ``repeats`` times, on SQLite (one home) and on PostgreSQL (one database,
  through ``SELFIMPROVE_DB``; a throwaway server from ``tests/_postgres.py``, skipped with its
  reason where none can run). Counted: processes that failed, versions whose checkpoint does
  not load with its checksum, experiments recorded other than exactly once (the ids the
  processes reported against the ledger), experiments left running or marked stale (false
  stale marks: every process finished), models without exactly one incumbent.
- **Crashes.** ``kills`` times: one of ``run``, ``improve``, ``rollback`` and ``engine
  approve`` (chosen by the seed) is started on one home and killed with SIGKILL at a moment
  drawn uniformly between the end of its imports and its measured duration; then a fresh
  ``selfimprove status --json`` must show no incumbent damaged and no experiment still
  ``running`` (the killed one reads ``stale`` at once), every incumbent must load with its
  checksum, and the approved file must hold exactly its bytes before or after the change.

``python -m benchmarks.soak --mode quick|full``. Written as a runner, not a test: it takes
minutes (full: about 30 on two cores), and its figures go to ``results/soak.<mode>.json``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import Record, log, runner_args

__all__ = ["Config", "main", "run"]

CLI = [sys.executable, "-m", "selfimprove"]
#: Two small built-in models: short cycles, so the processes meet in the store often.
MODELS = ["--model", "neural_sort", "--model", "pattern_recognition"]
SLOW = (
    "def square(n):\n    total = 0\n    for _ in range(n):\n        total += n\n    return total\n"
)
FAST = "def square(n):\n    return n * n\n"
CHECK = "python -c 'import mymodule; assert mymodule.square(7) == 49'"


@dataclass(frozen=True)
class Config:
    mode: str
    procs: int
    cycles: int
    repeats: int
    kills: int
    epochs: int
    seed: int = 0

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        if mode == "full":
            return cls(mode, procs=4, cycles=3, repeats=5, kills=50, epochs=2)
        if mode == "quick":
            return cls(mode, procs=4, cycles=3, repeats=1, kills=12, epochs=2)
        return cls(mode, procs=2, cycles=1, repeats=1, kills=3, epochs=1)


# ---------------------------------------------------------------------- concurrency
def _verify_store(home: Path, db_url: str | None, reported: list[int]) -> dict[str, Any]:
    """What a finished store holds, counted (every checkpoint loaded, checksum verified)."""
    from selfimprove.errors import SelfImproveError
    from selfimprove.registry import Registry
    from selfimprove.store import Decision, ExperimentStatus, Store, VersionStatus

    store = Store(db_url, home=home) if db_url else Store(home=home)
    try:
        registry = Registry(store, home)
        experiments = store.list_experiments()
        ids = [e.id for e in experiments]
        bad_versions = versions = bad_incumbents = 0
        for model in store.list_models():
            listed = registry.versions(model.name)
            incumbents = [v for v in listed if v.status is VersionStatus.INCUMBENT]
            bad_incumbents += len(incumbents) != 1
            for v in listed:
                if not v.status.has_weights():
                    continue
                versions += 1
                try:
                    registry.load(model.name, v.number)
                except SelfImproveError:
                    bad_versions += 1
        return {
            "experiments": len(ids),
            "recorded_not_once": len(set(reported) ^ set(ids)) + len(reported) - len(set(reported)),
            "left_running": sum(e.status is ExperimentStatus.RUNNING for e in experiments),
            "stale": sum(e.status is ExperimentStatus.STALE for e in experiments),
            "promoted": sum(e.decision is Decision.PROMOTE for e in experiments),
            "superseded": sum("superseded" in e.statistics for e in experiments),
            "versions_checked": versions,
            "checksum_mismatches": bad_versions,
            "models_without_one_incumbent": bad_incumbents,
        }
    finally:
        store.close()


def _concurrent_round(cfg: Config, home: Path, db_url: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if db_url:
        env["SELFIMPROVE_DB"] = db_url
    argv = [*CLI, "run", "--cycles", str(cfg.cycles), *MODELS, "--epochs", str(cfg.epochs)]
    argv += ["--json", "--home", str(home)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(cfg.procs)
    ]
    done = [p.communicate(timeout=1800) for p in procs]
    pairs = list(zip(procs, done, strict=True))
    failures = [err.strip().splitlines()[-1:] for p, (_, err) in pairs if p.returncode]
    reported = []
    for p, (out, _) in pairs:
        if p.returncode == 0:
            reported += [o["experiment_id"] for o in json.loads(out) if o["experiment_id"]]
    found = _verify_store(home, db_url, reported)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "process_failures": len(failures),
        "failure_lines": failures,
        **found,
    }


def _backends(workdir: Path) -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """``[(name, cluster or None)]`` and what could not run, with the reason."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._postgres import PostgresUnavailable, start_cluster

    try:
        return [("sqlite", None), ("postgresql", start_cluster())], []
    except PostgresUnavailable as exc:
        return [("sqlite", None)], [{"what": "concurrency on PostgreSQL", "why": str(exc)}]


def concurrency(cfg: Config, workdir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    backends, not_run = _backends(workdir)
    out: dict[str, Any] = {}
    try:
        for name, cluster in backends:
            rounds = []
            for r in range(cfg.repeats):
                home = workdir / f"concurrency-{name}-{r}"
                db_url = cluster.create_schema()[1] if cluster is not None else None
                result = _concurrent_round(cfg, home, db_url)
                log.info("%s round %d: %s", name, r + 1, result)
                rounds.append(result)
            out[name] = {"rounds": rounds, "server": getattr(cluster, "version", None)}
    finally:
        for _, cluster in backends:
            if cluster is not None:
                cluster.stop()
    return out, not_run


# ---------------------------------------------------------------------- crashes
def _cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--home", str(home)], capture_output=True, text=True, timeout=timeout
    )


def _approval_target(home: Path, root: Path) -> int:
    """The code improvement to approve next: the newest pending one that still fits the file
    (one whose approval a kill cut short, so that the next approval must recover it), else a
    new proposal of ``root/mymodule.py`` the other way round. Pending ones that no longer fit
    the file are rejected."""
    import hashlib

    from selfimprove.engine import SelfImprovementEngine
    from selfimprove.store import CodeImprovementStatus

    current = (root / "mymodule.py").read_text()
    digest = hashlib.sha256(current.encode()).hexdigest()
    with SelfImprovementEngine(home=home, root=root, check_command=CHECK) as engine:
        for rec in reversed(engine.list_improvements(CodeImprovementStatus.PENDING)):
            if digest in (rec.sha256_before, rec.sha256_after):
                return rec.id
            engine.reject_improvement(rec.id, reason="soak: the file moved on")
        new = FAST if current == SLOW else SLOW
        return engine.apply_improvement("soak", "mymodule.py", "square", new).id


def _operation(name: str, home: Path, root: Path, cfg: Config) -> list[str]:
    if name == "run":
        return ["run", "--cycles", "1", *MODELS, "--epochs", str(cfg.epochs)]
    if name == "improve":
        return ["improve", "neural_sort", "--strategy", "train", "--budget-epochs", "20"]
    if name == "rollback":
        return ["rollback", "neural_sort"]
    ident = _approval_target(home, root)
    return ["engine", "approve", str(ident), "--root", str(root), "--check-command", CHECK]


def _import_seconds() -> float:
    """How long the command line takes to import what every command needs (median of 3)."""
    code = "import torch, selfimprove.surfaces.cli.app, selfimprove.loop.improver"
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _after_kill(home: Path, root: Path) -> dict[str, Any]:
    """What a fresh ``status`` and a full load of every incumbent show after a kill."""
    from selfimprove.errors import SelfImproveError
    from selfimprove.registry import Registry
    from selfimprove.store import Store

    done = _cli(home, "status", "--json")
    status = json.loads(done.stdout) if done.returncode == 0 else {}
    rows = status.get("incumbents", [])
    damaged_shown = [
        m["name"] for m in rows if {m.get("checkpoint"), m.get("manifest")} - {"ok", None}
    ]
    store = Store(home=home)
    try:
        registry = Registry(store, home)
        damaged = 0
        for model in store.list_models():
            try:
                registry.load(model.name)
            except SelfImproveError:
                damaged += 1
    finally:
        store.close()
    text = (root / "mymodule.py").read_text()
    return {
        "status_rc": done.returncode,
        "running_shown": status.get("experiments_by_status", {}).get("running", 0),
        "damaged_shown": damaged_shown,
        "damaged_incumbents": damaged,
        "stale_shown": status.get("experiments_by_status", {}).get("stale", 0),
        "file_torn": text not in (SLOW, FAST),
    }


def crashes(cfg: Config, workdir: Path) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    home, root = workdir / "crash-home", workdir / "crash-code"
    root.mkdir(parents=True, exist_ok=True)
    (root / "mymodule.py").write_text(SLOW)
    first = _cli(home, "run", "--cycles", "2", *MODELS, "--epochs", str(cfg.epochs))
    if first.returncode:
        raise RuntimeError(f"the crash soak's first run failed: {first.stderr[-500:]}")
    imports = _import_seconds()
    durations: dict[str, float] = {}
    for name in ("run", "improve", "rollback", "approve"):  # each once to the end: how long
        t = time.perf_counter()
        _cli(home, *_operation(name, home, root, cfg))
        durations[name] = time.perf_counter() - t
    kills: list[dict[str, Any]] = []
    # Until ``kills`` processes were really killed (one that finished before its moment is
    # recorded too, and checked the same way), at most three times as many tries.
    for k in range(3 * cfg.kills):
        if sum(x["killed"] for x in kills) >= cfg.kills:
            break
        name = rng.choice(sorted(durations))
        argv = _operation(name, home, root, cfg)
        moment = rng.uniform(imports, max(imports, 0.9 * durations[name]))
        proc = subprocess.Popen(
            [*CLI, *argv, "--home", str(home)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            proc.wait(timeout=moment)
            killed = False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = True
        seen = _after_kill(home, root)
        log.info("kill %d: %s at %.1f s (killed=%s): %s", k + 1, name, moment, killed, seen)
        kills.append({"operation": name, "at_s": round(moment, 2), "killed": killed, **seen})
    from selfimprove.store import Store

    store = Store(home=home)
    try:
        trail = store.list_audit()
    finally:
        store.close()
    recovered = [a.details.get("done", "") for a in trail if a.action == "interrupted"]
    return {
        "import_s": round(imports, 2),
        "durations_s": durations,
        "kills": kills,
        "code_changes_recovered": len(recovered),
        "recoveries": recovered,
    }


# ---------------------------------------------------------------------- the record
def _sum(rounds: list[dict[str, Any]], key: str) -> int:
    return int(sum(r[key] for r in rounds))


def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path) -> Path:
    rec = Record("soak", 7, "Reliability: processes sharing a store, and crashes", cfg.mode, argv)
    rec.seeds = [cfg.seed]
    rec.settings = {"config": asdict(cfg), "models": MODELS[1::2]}
    workdir = workdir / f"soak-{cfg.mode}-{int(time.time())}"
    workdir.mkdir(parents=True)
    conc, rec.not_run = concurrency(cfg, workdir)
    crash = crashes(cfg, workdir)
    rec.results = {"concurrency": conc, "crashes": crash}
    keys = (
        "process_failures",
        "checksum_mismatches",
        "recorded_not_once",
        "left_running",
        "stale",
        "models_without_one_incumbent",
    )
    rows = []
    for backend, data in conc.items():
        rounds = data["rounds"]
        rows.append(
            [backend, len(rounds), _sum(rounds, "experiments"), _sum(rounds, "versions_checked")]
            + [_sum(rounds, k) for k in keys]
            + [_sum(rounds, "promoted"), _sum(rounds, "superseded")]
        )
    rec.table(
        f"{cfg.procs} processes x {cfg.cycles} cycles on one new store, {cfg.repeats} rounds",
        ["backend", "rounds", "experiments", "versions loaded", *keys, "promoted", "superseded"],
        rows,
        "Every process of a round runs `selfimprove run` on the same store at once; "
        "stale counts experiments marked as cut short although every process finished; "
        "superseded: candidates the judge would have promoted, rejected because another "
        "process had replaced the incumbent they were judged against.",
    )
    bad = sum(sum(row[4:10]) for row in rows)
    rec.target(
        "Processes sharing a store: 0 failures, 0 checksum mismatches, each experiment once, "
        "0 false stale marks",
        "; ".join(f"{r[0]}: {r[2]} experiments, {sum(r[4:10])} faults" for r in rows),
        bad == 0,
    )
    kills = crash["kills"]
    killed = [k for k in kills if k["killed"]]
    by_op = {op: sum(k["operation"] == op for k in killed) for op in sorted(crash["durations_s"])}
    damaged = sum(k["damaged_incumbents"] for k in kills)
    shown = sum(bool(k["damaged_shown"]) for k in kills)
    running = sum(k["running_shown"] for k in kills)
    torn = sum(k["file_torn"] for k in kills)
    rec.table(
        f"kill -9 at {len(kills)} random moments",
        ["operation", "started", "killed", "damaged incumbents", "left running", "torn file"],
        [
            [
                op,
                sum(k["operation"] == op for k in kills),
                by_op[op],
                sum(k["damaged_incumbents"] for k in kills if k["operation"] == op),
                sum(k["running_shown"] for k in kills if k["operation"] == op),
                sum(k["file_torn"] for k in kills if k["operation"] == op),
            ]
            for op in by_op
        ],
        f"Kill moments uniform between the imports ({crash['import_s']} s) and each "
        "operation's measured duration; after each, a fresh `selfimprove status --json` and a "
        "load of every incumbent (checksum verified).",
    )
    rec.target(
        "kill -9: 0 damaged incumbents, the killed experiment stale by the next status",
        f"{len(killed)} killed ({len(kills)} started): {damaged} damaged incumbents, {shown} "
        f"shown damaged, {running} left running in status, {torn} torn files; "
        f"{crash['code_changes_recovered']} interrupted code changes finished or undone",
        damaged == 0 and shown == 0 and running == 0 and torn == 0,
    )
    return rec.write(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.soak [--mode quick|full|smoke]``."""
    args, command = runner_args("benchmarks.soak", __doc__, argv)
    run(Config.for_mode(args.mode), command, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
