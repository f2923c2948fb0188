"""``evolve``: genetic architecture search (Optuna NSGA-II) on error and cost, driven by ask/tell.

Each trial draws architecture params from the task's search space (NSGA-II: a seeded random
first generation, then crossover and mutation of the non-dominated parents), trains a freshly
initialised model (seeded per trial) for at most ``trial_epochs``, and is told two values to
minimise:

1. its *holdout error*: the error-like form of the task's primary objective (``1 - accuracy``,
   the MSE) on the selection holdout carved from the training split (see
   :mod:`selfimprove.strategies._search`);
2. its *cost*: the parameter count by default, the targeted objective when it is latency or
   size (or the one named by the ``cost`` setting).

The parameter count is the default cost because it is deterministic: the search, and so the
candidate, depend only on the seed, also on a loaded machine (with measured latency as the
cost, later generations followed the timings, and two runs with one seed promoted different
models). Latency is timed only when it is the cost: on one thread after a warm-up, each trial
interleaved with the incumbent, and the trial's median rescaled by the incumbent's
(``trial / incumbent-now x incumbent-first``) so that load between trials cancels out. From the
Pareto front the strategy picks what the targeted objective calls for: for the primary
objective, the lowest holdout error among the points the judge's guards would admit (checkpoint
within the task's size limit, and, when trials were timed, batch-1 latency within the task's
latency tolerance of the incumbent's; the lowest error overall when none qualifies); the judge's
own latency guard still decides on the candidate. For ``latency_ms``, ``size_bytes`` or
``parameters``, the fastest / smallest point
whose holdout error is no worse than the incumbent's on the same holdout (re-timing the
qualifying points side by side before choosing the fastest). The incumbent may have trained on
some of the holdout's examples, so its holdout error is if anything optimistic: the bar is
stricter than it looks, never looser.

Search, then refit: trials are short (a trial's epochs are a small share of the budget), so
the point chosen from the front is trained on for what the search left of the budget
(``refit_share`` of it, 40 % by default), from its trial's weights, with the same early
stopping; the refit is kept only if it lowers the point's selection-holdout error. Without it a
freshly initialised trial of a few epochs rarely beat an incumbent trained for a hundred
(measured on digits: evolve candidates at 0.93 and 0.88 validation accuracy against a 0.96
incumbent, both rejected).

The space is the task's own ``search_space()``; a task without one (a user's own MLP) gets one
inferred around the incumbent's params (:func:`~selfimprove.tasks.effective_search_space`:
widths, depth, dropout, activation, each end built and run before it is searched), and the
candidate's record says so (``space_source``: ``"task"`` or ``"inferred: ..."``).

Reproducibility: trials' params in the first generation and every trial's training are seeded
by ``context.seed``; later generations depend on the cost values, so only a latency-cost search
(latency targeted, or ``cost="latency_ms"``) can differ between runs as timings do.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import ConfigError, StrategyError
from selfimprove.measure.training import OPTIMIZERS, TrainConfig
from selfimprove.nn.modules import arch_params, checkpoint_bytes
from selfimprove.nn.runtime import nominal_latency_ms, time_batch1
from selfimprove.objectives import Objective
from selfimprove.registry import LoadedModel
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies._base import Candidate, Cost, Strategy, StrategyContext
from selfimprove.strategies._evolve_choice import COSTS, Point, choose_point, incumbent_record
from selfimprove.strategies._params import Param
from selfimprove.strategies._search import (
    EpochLedger,
    TrialLoop,
    carve_selection_holdout,
    closed_float_setting,
    float_setting,
    holdout_error,
    int_setting,
    optuna_missing,
    sampler_seed,
    seeded_study,
    space_summary,
    train_trial,
)
from selfimprove.tasks import SPACE_FROM_TASK, SearchSpace, Split, Task, effective_search_space

__all__ = ["COSTS", "EVOLVE_PARAMS", "EvolveConfig", "EvolveStrategy"]

logger = logging.getLogger(__name__)


#: ``evolve``'s settings (see :class:`EvolveStrategy` for each one's meaning and default).
EVOLVE_PARAMS: dict[str, Param] = {
    "population_size": Param("int", 2, 1000, example="population_size=6"),
    "trial_epochs": Param("int", 1, 1_000_000, epochs_cap=True, example="trial_epochs=3"),
    "holdout_fraction": Param(
        "float", 0.0, 0.5, low_open=True, high_open=True, example="holdout_fraction=0.15"
    ),
    "max_trials": Param("int", 0, 1_000_000, example="max_trials=20 (0: no limit)"),
    "lr": Param("float", 0.0, 10.0, low_open=True, high_open=True, example="lr=0.003"),
    "batch_size": Param("int", 1, 1_000_000, example="batch_size=64"),
    "optimizer": Param("choice", choices=OPTIMIZERS, example="optimizer=adam"),
    "patience": Param("int", 0, 1000, example="patience=5"),
    "cost": Param("choice", choices=COSTS, example="cost=parameters"),
    "latency_repeats": Param("int", 3, 10_000, example="latency_repeats=15"),
    "error_tolerance": Param("float", 0.0, example="error_tolerance=0.01"),
    "refit_share": Param("float", 0.0, 0.9, example="refit_share=0.4 (0: no refit)"),
}


@dataclass(frozen=True)
class EvolveConfig:
    """``evolve``'s settings, read from ``context.params`` by :meth:`EvolveStrategy.settings`
    (see :class:`EvolveStrategy` for each one's meaning and default).

    Raises:
        ConfigError: A value out of range (the message names it and a valid one).
    """

    population_size: int
    trial_epochs: int
    holdout_fraction: float
    max_trials: int
    lr: float
    batch_size: int
    optimizer: str
    patience: int
    cost: str
    latency_repeats: int
    error_tolerance: float
    refit_share: float
    search_epochs: int  # the budget's epochs left to the trials

    def __post_init__(self) -> None:
        if self.cost not in COSTS:
            raise ConfigError(f"setting 'cost' must be one of {COSTS}, but got {self.cost!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"setting 'optimizer' must be one of {OPTIMIZERS}, but got {self.optimizer!r}."
            )
        v = asdict(self)
        int_setting(v, "population_size", 6, 2, 1000)
        int_setting(v, "trial_epochs", 1, 1, 1_000_000)
        int_setting(v, "search_epochs", 1, 1, 1_000_000)
        float_setting(v, "holdout_fraction", 0.15, 0.0, 0.5)
        int_setting(v, "max_trials", 0, 0, 1_000_000)
        float_setting(v, "lr", 3e-3, 0.0, 10.0)
        int_setting(v, "batch_size", 64, 1, 1_000_000)
        int_setting(v, "patience", 5, 0, 1000)
        int_setting(v, "latency_repeats", 15, 3, 10_000)
        closed_float_setting(v, "error_tolerance", 0.0, 0.0)
        closed_float_setting(v, "refit_share", 0.4, 0.0, 0.9)

    def train_config(self, epochs: int, seed: int, context: StrategyContext) -> TrainConfig:
        """How a trial (or the chosen point's refit) trains: at most ``epochs``, within what is
        left of the seconds budget."""
        return TrainConfig(
            epochs=epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            patience=self.patience,
            max_seconds=max(context.remaining(), 0.01),
            seed=seed,
        )


class EvolveStrategy(Strategy):
    """Two-objective architecture search with NSGA-II over the task's search space.

    Settings (``context.params``):

    - ``population_size``: NSGA-II population (default 6);
    - ``trial_epochs``: epoch cap of one trial (default: budget / (2 x population), 1 to 20);
    - ``holdout_fraction``: share of the training split held out to score trials (0.15);
    - ``max_trials``: stop after this many trials even with budget left (default: no limit);
    - ``lr``, ``batch_size``, ``optimizer``, ``patience``: training of each trial (defaults
      3e-3, 64, ``"adam"``, 5: short trials need a brisk learning rate);
    - ``cost``: the second objective, one of :data:`COSTS` (default: the targeted objective
      when it is one of them, else ``parameters``, which keeps the search independent of
      timing);
    - ``latency_repeats``: timed rounds per latency measurement (default 15);
    - ``error_tolerance``: for latency / size targets, how much higher than the incumbent's
      holdout error a point's may be (default 0: no worse);
    - ``refit_share``: share of the epoch budget kept to train the chosen point on after the
      search (default 0.4; 0: no refit).
    """

    name = "evolve"
    family = "architecture"

    PARAMS = EVOLVE_PARAMS

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` when the task has a search space (its own, or one inferred for an MLP-shaped
        model), the target is its primary objective or a cost, and Optuna is installed; else
        the reason.

        Raises:
            ConfigError: A bad setting in ``context.params`` (refused before anything runs).
        """
        self.check_params(context.params, context.budget)
        task = context.task
        space, source = effective_search_space(task, arch_params(incumbent.version.params))
        if space is None:
            return (
                f"task {task.name!r} offers no architecture search space "
                f"(Task.search_space() is None) and none could be inferred ({source}); give it "
                "one (e.g. search_space=MLP_SPACE) to evolve its architecture"
            )
        allowed = (task.primary.name, *COSTS)
        if context.objective not in allowed:
            return f"evolve targets one of {allowed}, not {context.objective}"
        missing = optuna_missing()
        return f"evolve {missing}" if missing else None

    # ------------------------------------------------------------------ settings
    def settings(self, context: StrategyContext) -> EvolveConfig:
        """Read and check ``context.params``.

        Raises:
            ConfigError: An unknown setting or a value out of range (the message names it).
        """
        p = self.check_params(context.params, context.budget)
        epochs = context.budget.epochs
        pop = int_setting(p, "population_size", 6, 2, 1000)
        default_cost = context.objective if context.objective in COSTS else "parameters"
        cost = p.get("cost", default_cost)
        if cost not in COSTS:
            raise ConfigError(f"setting 'cost' must be one of {COSTS}, but got {cost!r}.")
        optimizer = p.get("optimizer", "adam")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"setting 'optimizer' must be one of {OPTIMIZERS}, but got {optimizer!r}."
            )
        tol = closed_float_setting(p, "error_tolerance", 0.0, 0.0)
        refit_share = closed_float_setting(p, "refit_share", 0.4, 0.0, 0.9)
        search = max(1, epochs - round(refit_share * epochs))
        default_trial = min(20, max(1, search // (2 * pop)))
        return EvolveConfig(
            population_size=pop,
            trial_epochs=int_setting(p, "trial_epochs", default_trial, 1, epochs),
            holdout_fraction=float_setting(p, "holdout_fraction", 0.15, 0.0, 0.5),
            max_trials=int_setting(p, "max_trials", 0, 0, 1_000_000),
            lr=float_setting(p, "lr", 3e-3, 0.0, 10.0),
            batch_size=int_setting(p, "batch_size", 64, 1, 1_000_000),
            optimizer=optimizer,
            patience=int_setting(p, "patience", 5, 0, 1000),
            cost=cost,
            latency_repeats=int_setting(p, "latency_repeats", 15, 3, 10_000),
            error_tolerance=tol,
            refit_share=refit_share,
            search_epochs=search,
        )

    # ------------------------------------------------------------------ apply
    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Run the NSGA-II study and return the Pareto point the target calls for.

        Raises:
            ConfigError: A bad setting in ``context.params``.
            StrategyError: The task has no search space, no trial completed, or (latency /
                size targets) no Pareto point reached the incumbent's holdout error.
            BudgetExceededError: The seconds budget's hard limit was crossed.
        """
        t0 = time.perf_counter()
        task = context.task
        incumbent_params = arch_params(incumbent.version.params)
        space, source = effective_search_space(task, incumbent_params)
        if space is None:
            raise StrategyError(
                f"task {task.name!r} has no search space and none could be inferred "
                f"({source}); evolve needs Task.search_space()."
            )
        s = self.settings(context)
        primary = task.primary
        fit_task, holdout = carve_selection_holdout(
            task, s.holdout_fraction, derive_seed(context.seed, self.name, "selection_holdout")
        )
        x1 = holdout.x[:1]
        inc = incumbent.module
        inc_error = holdout_error(inc, task, holdout, primary)
        inc_nominal = nominal_latency_ms(inc, x1)
        inc_latency: float | None = None
        if s.cost == "latency_ms":
            (inc_times,) = time_batch1([inc], x1, 2 * s.latency_repeats)
            inc_latency = float(np.median(inc_times))
        # The task's own space is searched around its defaults; an inferred one around the
        # incumbent's params, which is where its ranges were built and checked.
        base = arch_params(task.default_params() if source == SPACE_FROM_TASK else incumbent_params)
        ledger = EpochLedger(s.search_epochs, s.trial_epochs)
        points, rows, front_numbers, stopped = self._search(
            space, base, (fit_task, holdout), context, s, ledger, (inc, x1, inc_latency)
        )

        if not front_numbers:
            raise StrategyError(
                f"evolve: no trial completed ({len(rows)} run, {ledger.spent} epochs, stopped "
                f"by {stopped}); raise the budget (epochs={context.budget.epochs}, "
                f"seconds={context.budget.seconds:g})."
            )
        front = sorted((points[n] for n in front_numbers), key=lambda p: (p.error, p.cost(s.cost)))
        chosen, choice = choose_point(
            context.objective, front, inc, x1, s, inc_error, inc_latency, task, inc_nominal
        )
        # Only the chosen trial's module leaves this function; drop the rest now.
        points.clear()
        refit = self._refit(chosen, fit_task, holdout, primary, context, s, ledger.spent)
        logger.info(
            "evolve on %s: %d trials, %d/%d epochs, Pareto front of %d; chose trial %d (%s)",
            task.name,
            len(rows),
            ledger.spent,
            ledger.total,
            len(front),
            chosen.number,
            choice["rule"],
        )
        details: dict[str, Any] = {
            "objectives": [f"holdout_error({primary.name})", s.cost],
            "target": context.objective,
            "choice": choice,
            "chosen_trial": chosen.number,
            "chosen_params": chosen.params,
            "incumbent": incumbent_record(inc, inc_error, inc_latency, inc_nominal),
            "pareto_front": [p.row() for p in front],
            "refit": refit,
            **_search_record(s, rows, ledger.spent, refit["epochs"], stopped, context),
            "holdout": {"fraction": s.holdout_fraction, "examples": len(holdout)},
            "sampler": f"NSGAIISampler(population_size={s.population_size}, seeded)",
            "space": space_summary(space),
            "space_source": source,
            "trials": rows,
        }
        return Candidate(
            module=chosen.module,
            params=chosen.params,
            strategy=self.name,
            origin="fresh_init",
            details=details,
            cost=Cost(epochs=ledger.spent + refit["epochs"], seconds=time.perf_counter() - t0),
        )

    # ------------------------------------------------------------------ the search
    def _search(
        self,
        space: SearchSpace,
        base: dict[str, Any],
        data: tuple[Task, Split],
        context: StrategyContext,
        s: EvolveConfig,
        ledger: EpochLedger,
        reference: tuple[nn.Module, torch.Tensor, float | None],
    ) -> tuple[dict[int, Point], list[dict[str, Any]], list[int], str]:
        """The NSGA-II trial loop: complete points by trial, every trial's record, the Pareto
        front's trial numbers, and what stopped the search."""
        points: dict[int, Point] = {}
        rows: list[dict[str, Any]] = []
        with seeded_study(
            lambda optuna: optuna.samplers.NSGAIISampler(
                seed=sampler_seed(context.seed, self.name, "nsga2"),
                population_size=s.population_size,
            ),
            directions=["minimize", "minimize"],
            study_name=f"selfimprove-evolve-{context.seed}",
        ) as (optuna, study):
            loop = TrialLoop(study, ledger, context.remaining, s.max_trials)
            for trial, cap in loop:
                params = {**base, **{n: p.suggest(trial, n) for n, p in space.items()}}
                row, point = self._trial(trial.number, cap, params, data, context, s, reference)
                ledger.charge(row["epochs"])
                if point is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    points[trial.number] = point
                    study.tell(trial, [point.error, point.cost(s.cost)])
                    row.update(point.row())
                rows.append(row)
                logger.debug(
                    "evolve trial %d: %s, %d epochs, error %s, %s %s",
                    trial.number,
                    row["state"],
                    row["epochs"],
                    row.get("holdout_error"),
                    s.cost,
                    row.get(s.cost),
                )
            front_numbers = sorted(t.number for t in study.best_trials)
        stopped = loop.stopped
        return points, rows, front_numbers, stopped

    # ------------------------------------------------------------------ one trial
    def _trial(
        self,
        number: int,
        cap: int,
        params: dict[str, Any],
        data: tuple[Task, Split],
        context: StrategyContext,
        s: EvolveConfig,
        reference: tuple[nn.Module, torch.Tensor, float | None],
    ) -> tuple[dict[str, Any], Point | None]:
        """Train trial ``number`` from a fresh seeded init; its record, and its point if it
        completed with a finite holdout error.

        Args:
            data: The task narrowed to the fit data, and the selection holdout.
            reference: The incumbent, one input ``(1, ...)`` and the incumbent's first batch-1
                latency: the trial is timed beside the incumbent and rescaled by it.
        """
        (fit_task, holdout), (inc, x1, inc_latency) = data, reference
        task = context.task
        trial_seed = derive_seed(context.seed, self.name, "trial", number)
        with torch_seeded(trial_seed):
            module = task.build(params)
        config = s.train_config(cap, trial_seed, context)
        run = train_trial(module, fit_task, config, check=context.check_budget)
        row: dict[str, Any] = {
            "trial": number,
            "params": params,
            "epochs": run.epochs,
            "state": run.state,
        }
        error = holdout_error(module, task, holdout, task.primary)
        if run.state != "complete" or not math.isfinite(error):
            row["reason"] = run.reason or "holdout error not finite"
            row["state"] = "failed"
            return row, None
        latency: float | None = None
        if inc_latency is not None:  # latency is the search's cost
            t_trial, t_inc = time_batch1([module, inc], x1, s.latency_repeats)
            # Rescaled by the incumbent timed in the same rounds: drift cancels.
            latency = float(np.median(t_trial) / np.median(t_inc) * inc_latency)
        point = Point(
            number=number,
            params=params,
            module=module,
            error=error,
            latency_ms=latency,
            nominal_ms=nominal_latency_ms(module, x1),
            size_bytes=checkpoint_bytes(module),
            parameters=sum(p.numel() for p in module.parameters()),
            epochs=run.epochs,
        )
        return row, point

    # ------------------------------------------------------------------ refit
    def _refit(
        self,
        chosen: Point,
        fit_task: Task,
        holdout: Split,
        primary: Objective,
        context: StrategyContext,
        s: EvolveConfig,
        spent: int,
    ) -> dict[str, Any]:
        """Train the chosen point on for the epochs the search left; keep it only if its
        selection-holdout error went down."""
        epochs = context.budget.epochs - spent
        out: dict[str, Any] = {"epochs": 0, "holdout_error_before": chosen.error}
        if s.refit_share == 0 or epochs < 1 or context.remaining() <= 0:
            out["skipped"] = "no refit share" if s.refit_share == 0 else "no budget left"
            return out
        before = {k: v.detach().clone() for k, v in chosen.module.state_dict().items()}
        seed = derive_seed(context.seed, self.name, "refit", chosen.number)
        config = s.train_config(epochs, seed, context)
        run = train_trial(chosen.module, fit_task, config, check=context.check_budget)
        error = holdout_error(chosen.module, context.task, holdout, primary)
        kept = run.state == "complete" and math.isfinite(error) and error < chosen.error
        if kept:
            chosen.error = error
        else:
            chosen.module.load_state_dict(before)
        out.update(epochs=run.epochs, holdout_error_after=error, kept=kept, state=run.state)
        return out


def _search_record(
    s: EvolveConfig,
    rows: list[dict[str, Any]],
    spent: int,
    refit_epochs: int,
    stopped: str,
    context: StrategyContext,
) -> dict[str, Any]:
    """How the search ran (trials, epochs, generations, training), for the record."""
    return {
        "n_trials": len(rows),
        "n_failed": sum(r["state"] == "failed" for r in rows),
        "epochs_used": spent + refit_epochs,
        "search_epochs": spent,
        "epoch_budget": context.budget.epochs,
        "trial_epochs": s.trial_epochs,
        "population_size": s.population_size,
        "generations": -(-len(rows) // s.population_size),
        "stopped": stopped,
        "training": {
            "lr": s.lr,
            "batch_size": s.batch_size,
            "optimizer": s.optimizer,
            "patience": s.patience,
        },
    }
