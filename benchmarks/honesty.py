"""Comparison 6 (first part): honesty in an A/A run. Candidates that are no better than the
incumbent go through the product's judge; the share promoted is the false-promotion rate.

Two kinds of A/A candidate, each a :class:`~selfimprove.strategies.Strategy` run through
``SelfImprover.improve`` (so the loop, the evaluator and the judge are the product's own):

- ``aa_reseed``: the incumbent's architecture, freshly initialised with the experiment's seed and
  trained with exactly the incumbent's recipe (same epochs, learning rate, early stopping). It
  is an exchangeable draw from the distribution the incumbent came from: no better in
  expectation, yet never identical: the realistic A/A.
- ``aa_copy``: an exact copy of the incumbent (a sanity check: nothing differs, nothing may pass).

Each task gets several incumbents (the same recipe, different seeds): one incumbent is itself
one draw, and a draw that happens to score low on validation is beaten by many candidates, so
the rate is estimated over incumbents as well as candidates. After a promotion the incumbent is
rolled back, so every candidate of an incumbent faces the same model.

The second part of comparison 6 (how much of a promoted validation gain holds on test, beside
Optuna's winner) comes from comparison 1's runs; see ``improvement.py``.

Run: ``python -m benchmarks.honesty --mode quick`` (or ``full``).
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmarks._common import (
    MODES,
    Record,
    bench_task,
    log,
    runner_args,
)
from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.modules import arch_params
from selfimprove.registry import LoadedModel
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies import Candidate, Cost, Strategy, StrategyContext

__all__ = ["AACopy", "AAReseed", "Config", "main", "run"]

MODEL = "bench_aa"


class AAReseed(Strategy):
    """A/A candidate: the incumbent's architecture, a new seed, the incumbent's own recipe.

    Args:
        recipe: The ``TrainConfig`` fields the incumbent was trained with (seed excluded).
    """

    name = "aa_reseed"
    family = "training"

    def __init__(self, recipe: dict[str, Any]) -> None:
        self.recipe = dict(recipe)

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Train a fresh copy of the architecture exactly as the incumbent was trained."""
        params = arch_params(incumbent.version.params)
        with torch_seeded(context.seed):
            module = context.task.build(params)
        result = train_(module, context.task, TrainConfig(seed=context.seed, **self.recipe))
        return Candidate(
            module=module,
            params=params,
            strategy=self.name,
            origin="fresh_init",
            details={"recipe": self.recipe, "epochs_run": result.epochs_run},
            cost=Cost(epochs=result.epochs_run, seconds=result.seconds),
        )


class AACopy(Strategy):
    """A/A candidate: an exact copy of the incumbent."""

    name = "aa_copy"
    family = "training"
    needs_teachers: ClassVar[bool] = False

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Return a deep copy of the incumbent."""
        return Candidate(
            module=copy.deepcopy(incumbent.module),
            params=dict(incumbent.version.params),
            strategy=self.name,
            origin="warm_start",
            details={},
            cost=Cost(epochs=0, seconds=0.0),
        )


@dataclass(frozen=True)
class Config:
    """What one run does.

    Attributes:
        mode: ``full``, ``quick`` or ``smoke``.
        tasks: Task keys.
        incumbents: Incumbents per task (seeds of the recipe).
        reseeds: ``aa_reseed`` experiments per incumbent.
        copies: ``aa_copy`` experiments per incumbent.
        epochs: The recipe's epochs (incumbents and candidates alike).
        seed: Base seed.
    """

    mode: str
    tasks: tuple[str, ...]
    incumbents: int
    reseeds: int
    copies: int
    epochs: int
    seed: int = 0

    @classmethod
    def for_mode(cls, mode: str) -> Config:
        """The configuration of ``mode``."""
        tasks = ("digits", "neural_sort", "diabetes")
        if mode == "full":
            return cls(mode, tasks, 8, 5, 1, 20)
        if mode == "quick":
            return cls(mode, tasks, 3, 3, 1, 12)
        if mode == "smoke":
            return cls(mode, ("digits",), 1, 2, 1, 2)
        raise ValueError(f"mode must be one of {MODES}, but got {mode!r}.")


def run_task(key: str, cfg: Config, workdir: Path) -> dict[str, Any]:
    """A/A experiments on one task: ``reseeds + copies`` candidates per incumbent."""
    bt = bench_task(key)
    recipe: dict[str, Any] = {"epochs": cfg.epochs, "lr": 1e-3, "patience": 5}
    params = bt.task.default_params()
    home = workdir / f"aa-{key}"
    shutil.rmtree(home, ignore_errors=True)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    config = SelfImprovementConfig(auto_start=False)
    with SelfImprover(home, config=config, seed=cfg.seed) as si:
        for i in range(cfg.incumbents):
            name = f"{MODEL}_{i}"
            s0 = derive_seed("bench", "aa", key, cfg.seed, "incumbent", i)
            with torch_seeded(s0):
                module = bt.task.build(params)
            train_(module, bt.task, TrainConfig(seed=s0, **recipe))
            si.register_model(name, bt.task, module, params)
            plan: list[Strategy] = [AAReseed(recipe)] * cfg.reseeds + [AACopy()] * cfg.copies
            for strategy in plan:
                outcome = si.loop.improve(
                    name,
                    cycle=si.store.max_cycle() + 1,
                    strategy=strategy,
                    only_below_target=False,
                )
                rows.append(
                    {
                        "incumbent": i,
                        "strategy": strategy.name,
                        "status": outcome.status,
                        "promoted": outcome.promoted,
                        "validation_before": outcome.before,
                        "validation_after": outcome.after,
                        "test_before": outcome.test_before,
                        "test_after": outcome.test_after,
                        "p_value": outcome.p_value,
                        "reason": outcome.reason[:200],
                    }
                )
                if outcome.promoted:
                    si.rollback(name)  # every candidate faces the same incumbent
    shutil.rmtree(home, ignore_errors=True)
    out: dict[str, Any] = {"description": bt.description, "seconds": time.perf_counter() - t0}
    for name in ("aa_reseed", "aa_copy"):
        done = [r for r in rows if r["strategy"] == name and r["status"] == "completed"]
        promoted = [r for r in done if r["promoted"]]
        ps = [float(r["p_value"]) for r in done if r["p_value"] is not None]
        out[name] = {
            "experiments": len(done),
            "failed": sum(r["strategy"] == name and r["status"] != "completed" for r in rows),
            "promoted": len(promoted),
            "share": len(promoted) / len(done) if done else None,
            "p_below_0.05": sum(p < 0.05 for p in ps),
            "median_p": float(np.median(ps)) if ps else None,
        }
    out["rows"] = rows
    return out


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion ``k / n``."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def run(cfg: Config, argv: Sequence[str], out_dir: Path, workdir: Path) -> Path:
    """Run comparison 6 (A/A) and write its JSON; returns the file."""
    rec = Record("honesty", 6, "Honesty: false promotions in an A/A run", cfg.mode, argv)
    rec.seeds = [cfg.seed]
    rec.budgets = {
        "recipe_epochs": cfg.epochs,
        "incumbents_per_task": cfg.incumbents,
        "reseeds_per_incumbent": cfg.reseeds,
        "copies_per_incumbent": cfg.copies,
        "threads": 1,
    }
    rec.settings = {
        "config": asdict(cfg),
        "judge": "product defaults: error -10 % relative and one-sided paired p < 0.05 on "
        "validation, guards on latency / size / accuracy",
        "incumbents": "the task's default architecture, trained with the recipe (lr 1e-3, "
        "patience 5), one per seed",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    per_task = {}
    for key in cfg.tasks:
        log.info("A/A on %s", key)
        per_task[key] = run_task(key, cfg, workdir)
    rec.results = {"tasks": per_task}
    rows = []
    totals = {"aa_reseed": [0, 0], "aa_copy": [0, 0]}
    for key, t in per_task.items():
        for name in ("aa_reseed", "aa_copy"):
            r = t[name]
            totals[name][0] += r["promoted"]
            totals[name][1] += r["experiments"]
            lo, hi = _wilson(r["promoted"], r["experiments"])
            rows.append(
                [
                    key,
                    name,
                    r["experiments"],
                    r["promoted"],
                    f"{100 * r['share']:.1f} %" if r["share"] is not None else "—",
                    f"{100 * lo:.0f}–{100 * hi:.0f} %" if r["experiments"] else "—",
                    r["p_below_0.05"],
                    f"{r['median_p']:.3g}" if r["median_p"] is not None else "—",
                ]
            )
    for name, (k, n) in totals.items():
        lo, hi = _wilson(k, n)
        rows.append(
            [
                "all tasks",
                name,
                n,
                k,
                f"{100 * k / n:.1f} %" if n else "—",
                f"{100 * lo:.0f}–{100 * hi:.0f} %" if n else "—",
                "",
                "",
            ]
        )
    rec.table(
        "A/A: candidates no better than the incumbent, through the product's judge",
        [
            "task",
            "candidate",
            "experiments",
            "promoted",
            "false promotions",
            "95 % interval (Wilson)",
            "p < 0.05 (test alone)",
            "median p",
        ],
        rows,
        "aa_reseed: the incumbent's architecture and recipe, a new seed (exchangeable with the "
        "incumbent); aa_copy: an exact copy. The judge also asks for a 10 % error reduction, so "
        "'p < 0.05' alone would promote more than the judge does.",
    )
    k, n = totals["aa_reseed"]
    share = k / n if n else math.nan
    lo, hi = _wilson(k, n)
    rec.target(
        "False promotions ≤ 5 % in A/A",
        f"{100 * share:.1f} % ({k} of {n} reseeded candidates; 95 % interval "
        f"{100 * lo:.0f}–{100 * hi:.0f} %); exact copies {totals['aa_copy'][0]} of "
        f"{totals['aa_copy'][1]}",
        bool(share <= 0.05) if n else None,
        ""
        if share <= 0.05
        else "see the per-task rows: the paired test's α and the 10 % "
        "threshold did not hold the rate down on every task",
    )
    if n and hi > 0.05 and share <= 0.05:
        rec.notes.append(
            f"With {n} A/A experiments the 95 % interval reaches {100 * hi:.0f} %: the "
            "point estimate meets the target, the sample cannot yet rule out a rate above 5 %."
        )
    return rec.write(out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.honesty [--mode quick|full|smoke]``."""
    args, command = runner_args("benchmarks.honesty", __doc__, argv)
    run(Config.for_mode(args.mode), command, args.out, args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
