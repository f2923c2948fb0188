"""``tune``: hyperparameter search (Optuna TPE + Hyperband) over warm-started training runs.

Each trial copies the incumbent's weights into a model of the same architecture (dropout may
change: it has no weights) and trains it with hyperparameters proposed by a seeded TPE sampler:
learning rate, weight decay, batch size, LR schedule, and dropout where the task's params have
one. After every epoch the trial reports its loss on the *selection holdout* (carved from the
training split; see :mod:`selfimprove.strategies._search`) and a pruner (Hyperband, minimum
resource one epoch, or the median rule) may stop it. The candidate is the trained model of the
trial with the lowest selection-holdout loss; validation and test are left to the judge.

Budget: the epochs of all trials, pruned and failed ones included, sum to at most
``context.budget.epochs``; each trial is capped at ``trial_epochs`` (or what is left), and no
trial starts once the seconds budget is spent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from selfimprove.errors import DivergedError, StrategyError
from selfimprove.measure.training import OPTIMIZERS, TrainConfig
from selfimprove.nn.modules import TRANSFORM_KEYS, arch_params
from selfimprove.objectives import EFFICIENCY_OBJECTIVES
from selfimprove.registry import LoadedModel
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies._base import Candidate, Cost, Strategy, StrategyContext
from selfimprove.strategies._params import Param, check_params
from selfimprove.strategies._search import (
    EpochLedger,
    TrialLoop,
    carve_selection_holdout,
    holdout_error,
    holdout_loss,
    optuna_missing,
    sampler_seed,
    seeded_study,
    space_summary,
    train_trial,
)
from selfimprove.tasks import CategoricalParam, FloatParam, SearchSpace, Split, Task, point_in

__all__ = ["DROPOUT_PARAM", "TRAINING_SPACE", "TUNE_PARAMS", "TuneConfig", "TuneStrategy"]

logger = logging.getLogger(__name__)

#: The training hyperparameters every run searches (names are :class:`TrainConfig` fields).
TRAINING_SPACE: SearchSpace = {
    "lr": FloatParam(1e-4, 1e-1, log=True),
    "weight_decay": FloatParam(1e-6, 1e-2, log=True),
    "batch_size": CategoricalParam((32, 64, 128)),
    "schedule": CategoricalParam(("plateau", "cosine")),
}

#: Searched too when the model's architecture params have a ``dropout`` key.
DROPOUT_PARAM = FloatParam(0.0, 0.5)

PRUNERS = ("hyperband", "median")
NOT_FOR = EFFICIENCY_OBJECTIVES


#: ``tune``'s settings (see :class:`TuneStrategy`).
TUNE_PARAMS: dict[str, Param] = {
    "trial_epochs": Param("int", 1, 1_000_000, epochs_cap=True, example="trial_epochs=5"),
    "pruner": Param("choice", choices=PRUNERS, example="pruner=median"),
    "n_startup_trials": Param("int", 1, 1000, example="n_startup_trials=5"),
    "holdout_fraction": Param(
        "float", 0.0, 0.5, low_open=True, high_open=True, example="holdout_fraction=0.15"
    ),
    "max_trials": Param("int", 0, 1_000_000, example="max_trials=20 (0: no limit)"),
    "optimizer": Param("choice", choices=OPTIMIZERS, example="optimizer=adamw"),
    "patience": Param("int", 0, 1000, example="patience=5"),
}


@dataclass(frozen=True)
class TuneConfig:
    """``tune``'s settings, read from ``context.params`` by :meth:`TuneStrategy.settings`.

    Attributes:
        trial_epochs: Epoch cap of one trial, also Hyperband's maximum resource (>= 1).
        pruner: ``"hyperband"`` or ``"median"``.
        n_startup_trials: Random trials before TPE models the results, in [1, 1000].
        holdout_fraction: Share of the training split held out to score trials, in (0, 0.5).
        max_trials: Stop after this many trials (0: no limit).
        optimizer: One of :data:`~selfimprove.measure.training.OPTIMIZERS`.
        patience: Early-stopping patience inside a trial, in [0, 1000].

    Raises:
        ConfigError: A value out of range (the message names it and a valid one).
    """

    trial_epochs: int
    pruner: str
    n_startup_trials: int
    holdout_fraction: float
    max_trials: int
    optimizer: str
    patience: int

    def __post_init__(self) -> None:
        check_params("tune", TUNE_PARAMS, asdict(self))


@dataclass
class _Best:
    """The best complete trial so far (its trained module is the candidate)."""

    number: int
    score: float
    module: nn.Module
    params: dict[str, Any]
    hyper: dict[str, Any]


class _Reporter:
    """``on_epoch`` callback: report the selection-holdout loss, prune when told to."""

    def __init__(
        self, optuna: ModuleType, trial: Any, module: nn.Module, task: Task, holdout: Split
    ) -> None:
        self.optuna, self.trial, self.module = optuna, trial, module
        self.task, self.holdout = task, holdout
        self.last = math.nan

    def __call__(self, row: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        self.last = holdout_loss(self.module, self.task, self.holdout)
        if not math.isfinite(self.last):
            raise DivergedError(
                f"the holdout loss became {self.last} at epoch {epoch}; lower the learning rate."
            )
        self.trial.report(self.last, epoch)
        if self.trial.should_prune():
            raise self.optuna.TrialPruned(f"pruned at epoch {epoch}: holdout loss {self.last:.4g}")


def load_warm_state_(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Fill ``module`` with the incumbent's ``state``; returns how (``by_name``/``by_position``).

    Only dropout differs between a trial's architecture and the incumbent's, and dropout has no
    weights; but a builder that adds an ``nn.Dropout`` layer only when dropout > 0 (as
    :func:`~selfimprove.tasks.build_mlp` does) shifts the names of the layers after it. Then the
    weights are matched by position, which is allowed only when the ordered shapes agree.

    Raises:
        StrategyError: Neither names nor ordered shapes match.
    """
    target = module.state_dict()
    shapes_t = [tuple(v.shape) for v in target.values()]
    shapes_s = [tuple(v.shape) for v in state.values()]
    if list(target) == list(state) and shapes_t == shapes_s:
        module.load_state_dict(dict(state), strict=True)
        return "by_name"
    if shapes_t == shapes_s:
        module.load_state_dict(dict(zip(target, state.values(), strict=True)), strict=True)
        return "by_position"
    raise StrategyError(
        "cannot warm-start: the trial's architecture does not hold the incumbent's weights "
        f"(shapes {shapes_t} vs {shapes_s}); tune only changes dropout, so the task's builder "
        "must keep every weight when dropout changes."
    )


class TuneStrategy(Strategy):
    """Hyperparameter search with Optuna: seeded TPE proposals, Hyperband (or median) pruning.

    Settings (``context.params``):

    - ``trial_epochs``: epoch cap of one trial, also Hyperband's maximum resource (default:
      a quarter of the budget, between 1 and 20);
    - ``pruner``: ``"hyperband"`` (default; minimum resource 1 epoch, reduction factor 3) or
      ``"median"``;
    - ``n_startup_trials``: random trials before TPE models the results (default 5);
    - ``holdout_fraction``: share of the training split held out to score trials (0.15);
    - ``max_trials``: stop after this many trials even with budget left (default: no limit);
    - ``optimizer``: ``"adamw"`` (default: decoupled weight decay), ``"adam"`` or ``"sgd"``;
    - ``patience``: early-stopping patience inside a trial (default 5).
    """

    name = "tune"
    family = "training"
    warm_startable = True  # the best settings of earlier tune experiments are tried first

    PARAMS = TUNE_PARAMS

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` for data objectives of a float model with Optuna installed, else why not.

        Raises:
            ConfigError: A bad setting in ``context.params`` (refused before anything runs).
        """
        self.check_params(context.params, context.budget)
        if context.objective in NOT_FOR:
            return (
                f"tune searches training hyperparameters, which improve data objectives "
                f"(accuracy, loss), not {context.objective}"
            )
        transformed = [k for k in TRANSFORM_KEYS if incumbent.version.params.get(k)]
        if transformed:
            return f"tune trains float weights; this version is transformed ({transformed[0]})"
        missing = optuna_missing()
        return f"tune {missing}" if missing else None

    # ------------------------------------------------------------------ settings
    def settings(self, context: StrategyContext) -> TuneConfig:
        """Read and check ``context.params``.

        Raises:
            ConfigError: An unknown setting or a value out of range (the message names it).
        """
        p = self.check_params(context.params, context.budget)
        return TuneConfig(
            trial_epochs=p.get("trial_epochs", min(20, max(1, context.budget.epochs // 4))),
            pruner=p.get("pruner", "hyperband"),
            n_startup_trials=p.get("n_startup_trials", 5),
            holdout_fraction=p.get("holdout_fraction", 0.15),
            max_trials=p.get("max_trials", 0),
            optimizer=p.get("optimizer", "adamw"),
            patience=p.get("patience", 5),
        )

    def space(
        self, task: Task, params: Mapping[str, Any], state: Mapping[str, torch.Tensor]
    ) -> tuple[SearchSpace, str]:
        """The space to search for this model, and a note on dropout.

        Dropout is searched when the architecture params (the incumbent's, or the task's
        defaults) have a ``dropout`` key and the incumbent's weights fit models built with
        dropout 0 and > 0 alike.
        """
        space = dict(TRAINING_SPACE)
        if "dropout" not in params and "dropout" not in task.default_params():
            return space, "not searched: the architecture params have no 'dropout' key"
        try:
            for d in (DROPOUT_PARAM.low, DROPOUT_PARAM.high / 2):
                with torch_seeded(0):
                    probe = task.build({**params, "dropout": d})
                load_warm_state_(probe, state)
        except Exception as exc:  # TaskError, StrategyError, or a builder's own complaint
            return space, f"not searched: {type(exc).__name__}: {exc}"
        space["dropout"] = DROPOUT_PARAM
        return space, "searched"

    # ------------------------------------------------------------------ apply
    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Run the study and return the best trial's model.

        Raises:
            ConfigError: A bad setting in ``context.params``.
            StrategyError: No trial completed within the budget.
            BudgetExceededError: The seconds budget's hard limit was crossed.
        """
        t0 = time.perf_counter()
        s = self.settings(context)
        task = context.task
        fit_task, holdout = carve_selection_holdout(
            task, s.holdout_fraction, derive_seed(context.seed, self.name, "selection_holdout")
        )
        base = arch_params(incumbent.version.params)
        # A detached copy: the incumbent's own tensors are never handed to a trial.
        state = {k: v.detach().clone() for k, v in incumbent.module.state_dict().items()}
        space, dropout_note = self.space(task, base, state)
        ledger = EpochLedger(context.budget.epochs, s.trial_epochs)
        rows: list[dict[str, Any]] = []
        best: _Best | None = None
        with seeded_study(
            lambda optuna: optuna.samplers.TPESampler(
                seed=sampler_seed(context.seed, self.name, "tpe"),
                n_startup_trials=s.n_startup_trials,
            ),
            directions=["minimize"],
            pruner=lambda optuna: self._pruner(optuna, s),
            # Hyperband assigns brackets by hashing the study name: keep it seeded too.
            study_name=f"selfimprove-tune-{context.seed}",
        ) as (optuna, study):
            # What won this model's earlier tune experiments is tried first (when it fits).
            warm = [p for p in (point_in(space, w) for w in context.warm_starts) if p]
            for point in warm:
                study.enqueue_trial(point, skip_if_exists=True)
            loop = TrialLoop(study, ledger, context.remaining, s.max_trials)
            trial_run = _TrialRunner(optuna, study, task, fit_task, holdout, state, context, s)
            for trial, cap in loop:
                row, done = trial_run(trial, cap, space, base)
                ledger.charge(row["epochs"])
                if done is not None and (best is None or done.score < best.score):
                    best = done
                rows.append(row)
        stopped = loop.stopped

        n_pruned = sum(r["state"] == "pruned" for r in rows)
        n_failed = sum(r["state"] == "failed" for r in rows)
        if best is None:
            raise StrategyError(
                f"tune: no trial completed ({len(rows)} run, {n_pruned} pruned, {n_failed} "
                f"failed, {ledger.spent} epochs, stopped by {stopped}); raise the budget "
                f"(epochs={context.budget.epochs}, seconds={context.budget.seconds:g})."
            )
        logger.info(
            "tune on %s: %d trials (%d pruned, %d failed), %d/%d epochs; best trial %d, "
            "holdout loss %.4g",
            task.name,
            len(rows),
            n_pruned,
            n_failed,
            ledger.spent,
            ledger.total,
            best.number,
            best.score,
        )
        module, params, exported = self._export(task, base, best, holdout)
        details: dict[str, Any] = {
            "best_trial": best.number,
            "best_params": best.hyper,
            "warm_starts": warm,
            "best_holdout_loss": best.score,
            "best_holdout_error": holdout_error(best.module, task, holdout, task.primary),
            # The incumbent may have trained on some of these examples (its own holdout was
            # drawn differently): its figures here are optimistic, for reference only.
            "incumbent_holdout_loss": holdout_loss(incumbent.module, task, holdout),
            "incumbent_holdout_error": holdout_error(incumbent.module, task, holdout, task.primary),
            "error_objective": task.primary.name,
            "n_trials": len(rows),
            "n_pruned": n_pruned,
            "n_failed": n_failed,
            "epochs_used": ledger.spent,
            "epoch_budget": ledger.total,
            **self._search_record(s, stopped, holdout, space, dropout_note),
            "exported": exported,
            "trials": rows,
        }
        return Candidate(
            module=module,
            params=params,
            strategy=self.name,
            origin="warm_start",
            details=details,
            cost=Cost(epochs=ledger.spent, seconds=time.perf_counter() - t0),
        )

    @staticmethod
    def _export(
        task: Task, base: dict[str, Any], best: _Best, holdout: Split
    ) -> tuple[nn.Module, dict[str, Any], str]:
        """The candidate: the best trial's weights in the incumbent's architecture.

        Dropout is a training-time regulariser and the identity at inference, but a builder may
        add an ``nn.Dropout`` layer only when dropout > 0 (``build_mlp`` does), and on a tiny
        model that extra call alone costs a significant share of batch-1 latency. So the trained
        weights are moved back into a model built from the incumbent's own params: same
        architecture, same latency, the same outputs in eval mode (checked on the selection
        holdout). If the outputs differed, the trial's own architecture is kept instead.

        Returns:
            The module, its params, and how it was exported (for the record).
        """
        if best.params == base:
            return best.module, best.params, "the best trial kept the incumbent's params"
        with torch_seeded(0):  # the weights are overwritten; seeded only to spare the global RNG
            module = task.build(base)
        try:
            load_warm_state_(module, best.module.state_dict())
        except StrategyError as exc:
            return best.module, best.params, f"kept the trial's params: {exc}"
        module.eval()
        with torch.no_grad():
            same = torch.equal(module(holdout.x), best.module.eval()(holdout.x))
        if not same:
            return best.module, best.params, "kept the trial's params: outputs differ"
        return (
            module,
            dict(base),
            "trained weights moved into the incumbent's architecture params (dropout is a "
            "training hyperparameter; eval outputs checked identical)",
        )

    def _search_record(
        self, s: TuneConfig, stopped: str, holdout: Split, space: SearchSpace, dropout_note: str
    ) -> dict[str, Any]:
        """How the search ran, for the candidate's record."""
        return {
            "trial_epochs": s.trial_epochs,
            "stopped": stopped,
            "score": "task loss on a selection holdout carved from the training split",
            "holdout": {"fraction": s.holdout_fraction, "examples": len(holdout)},
            "sampler": f"TPESampler(n_startup_trials={s.n_startup_trials}, seeded)",
            "pruner": self._pruner_label(s),
            "optimizer": s.optimizer,
            "space": space_summary(space),
            "dropout": dropout_note,
        }

    @staticmethod
    def _pruner(optuna: ModuleType, s: TuneConfig) -> Any:
        if s.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=s.trial_epochs, reduction_factor=3
        )

    @staticmethod
    def _pruner_label(s: TuneConfig) -> str:
        if s.pruner == "median":
            return "MedianPruner(n_startup_trials=3, n_warmup_steps=1)"
        return f"HyperbandPruner(min_resource=1, max_resource={s.trial_epochs}, reduction_factor=3)"


class _TrialRunner:
    """Runs one tune trial: propose, warm-start, train, score on the holdout, tell the study."""

    def __init__(
        self,
        optuna: ModuleType,
        study: Any,
        task: Task,
        fit_task: Task,
        holdout: Split,
        state: Mapping[str, torch.Tensor],
        context: StrategyContext,
        s: TuneConfig,
    ) -> None:
        self.optuna, self.study, self.task, self.fit_task = optuna, study, task, fit_task
        self.holdout, self.state, self.context, self.s = holdout, state, context, s

    def __call__(
        self, trial: Any, cap: int, space: SearchSpace, base: Mapping[str, Any]
    ) -> tuple[dict[str, Any], _Best | None]:
        """The trial's record, and the trial as a :class:`_Best` when it completed."""
        task, holdout, context, s = self.task, self.holdout, self.context, self.s
        hyper: dict[str, Any] = {n: p.suggest(trial, n) for n, p in space.items()}
        params = dict(base)
        if "dropout" in hyper:
            params["dropout"] = hyper["dropout"]
        trial_seed = derive_seed(context.seed, TuneStrategy.name, "trial", trial.number)
        with torch_seeded(trial_seed):
            module = task.build(params)
        warm = load_warm_state_(module, self.state)
        config = TrainConfig(
            epochs=cap,
            lr=hyper["lr"],
            weight_decay=hyper["weight_decay"],
            batch_size=hyper["batch_size"],
            schedule=hyper["schedule"],
            optimizer=s.optimizer,
            patience=s.patience,
            max_seconds=max(context.remaining(), 0.01),
            seed=trial_seed,
        )
        reporter = _Reporter(self.optuna, trial, module, task, holdout)
        run = train_trial(
            module, self.fit_task, config, check=context.check_budget, on_epoch=reporter
        )
        row: dict[str, Any] = {
            "trial": trial.number,
            "params": hyper,
            "epochs": run.epochs,
            "state": run.state,
            "warm_start": warm,
        }
        done: _Best | None = None
        states = self.optuna.trial.TrialState
        if run.state == "complete":
            score = holdout_loss(module, task, holdout)
            row["holdout_loss"] = score
            row["holdout_error"] = holdout_error(module, task, holdout, task.primary)
            row["best_epoch"] = run.result.best_epoch if run.result else None
            if math.isfinite(score):
                self.study.tell(trial, score)
                done = _Best(trial.number, score, module, params, hyper)
            else:
                row["state"], row["reason"] = "failed", "holdout loss not finite"
                self.study.tell(trial, state=states.FAIL)
        elif run.state == "pruned":
            row["holdout_loss"] = reporter.last
            row["reason"] = run.reason
            self.study.tell(trial, state=states.PRUNED)
        else:
            row["reason"] = run.reason
            self.study.tell(trial, state=states.FAIL)
        logger.debug(
            "tune trial %d: %s, %d epochs, holdout loss %s",
            trial.number,
            row["state"],
            run.epochs,
            row.get("holdout_loss"),
        )
        return row, done
