"""``tune``: Optuna TPE + pruning over warm-started training, judged through the real loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.registry import LoadedModel
from selfimprove.store import Decision, ExperimentStatus
from selfimprove.strategies import Budget, Candidate, StrategyContext
from selfimprove.strategies._search import carve_selection_holdout, train_trial
from selfimprove.strategies._tune import TuneStrategy
from selfimprove.tasks import SupervisedTask, build_mlp, resolve_task

WEAK = {"width": 32, "depth": 1, "activation": "relu", "dropout": 0.0}


def _register_weak_digits(si: SelfImprover, name: str = "digits") -> None:
    """A deliberately badly trained digits MLP: width 32, one epoch at lr 1e-4."""
    task = resolve_task("pattern_recognition")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = task.build(WEAK)
    train_(module, task, TrainConfig(epochs=1, lr=1e-4, seed=0))
    si.register_model(name, task, module, dict(WEAK))


def _apply(
    inc: LoadedModel, *, seed: int, epochs: int, seconds: float = 60.0, **params: Any
) -> Candidate:
    ctx = StrategyContext(
        task=inc.task,
        objective="accuracy",
        budget=Budget(epochs=epochs, seconds=seconds),
        seed=seed,
        params=params,
    )
    return TuneStrategy().apply(inc, ctx)


def test_tune_promotes_a_badly_trained_model_within_its_epoch_budget(
    improver: SelfImprover,
) -> None:
    _register_weak_digits(improver)
    out = improver.loop.improve("digits", cycle=1, strategy=TuneStrategy(), budget=Budget(40, 60))
    assert out.decision is Decision.PROMOTE, out.reason
    assert out.before < 0.2 and out.after > 0.9  # validation accuracy, judged by the loop
    exp = improver.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    assert exp.status is ExperimentStatus.COMPLETED
    d = exp.statistics["strategy_details"]
    trials = d["trials"]
    # Budget: the sum of epochs over all trials, pruned ones included.
    assert exp.compute["epochs"] == d["epochs_used"] == sum(t["epochs"] for t in trials) <= 40
    assert all(1 <= t["epochs"] <= d["trial_epochs"] for t in trials)
    assert d["n_trials"] == len(trials) >= 4
    assert d["n_pruned"] == sum(t["state"] == "pruned" for t in trials) >= 1
    assert all(t["epochs"] < d["trial_epochs"] for t in trials if t["state"] == "pruned")
    # The candidate is the best complete trial on the selection holdout.
    complete = [t for t in trials if t["state"] == "complete"]
    best = min(complete, key=lambda t: t["holdout_loss"])
    assert d["best_trial"] == best["trial"] and d["best_params"] == best["params"]
    assert set(d["best_params"]) == {"lr", "weight_decay", "batch_size", "schedule", "dropout"}
    assert d["best_holdout_error"] < d["incumbent_holdout_error"]
    # Lineage: warm-started, and the incumbent's architecture kept (dropout was a training
    # hyperparameter of the trials; an extra eval-mode Dropout layer would only add latency).
    v = improver.registry.incumbent("digits")
    assert (v.number, v.strategy, v.origin) == (2, "tune", "warm_start")
    assert v.params == WEAK and "identical" in d["exported"]


def test_tune_is_deterministic_given_the_seed(improver: SelfImprover) -> None:
    _register_weak_digits(improver)
    inc = improver.load("digits")
    a = _apply(inc, seed=11, epochs=20)
    b = _apply(inc, seed=11, epochs=20)
    c = _apply(inc, seed=12, epochs=20)
    assert a.details["best_params"] == b.details["best_params"]
    assert a.details["trials"] == b.details["trials"]
    for pa, pb in zip(a.module.state_dict().values(), b.module.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    # ... and the seed is really used: another seed proposes other hyperparameters.
    assert [t["params"] for t in c.details["trials"]] != [t["params"] for t in a.details["trials"]]


def test_tune_spends_exactly_its_epoch_budget_with_a_per_trial_cap(
    improver: SelfImprover,
) -> None:
    _register_weak_digits(improver)
    cand = _apply(improver.load("digits"), seed=3, epochs=7, trial_epochs=3)
    epochs = [t["epochs"] for t in cand.details["trials"]]
    assert cand.cost.epochs == sum(epochs) == 7  # the last trial gets what is left
    assert max(epochs) <= 3 and len(epochs) >= 3
    assert cand.details["stopped"] == "epoch_budget"


def test_tune_stops_starting_trials_when_the_seconds_budget_is_spent(
    improver: SelfImprover,
) -> None:
    _register_weak_digits(improver)
    cand = _apply(improver.load("digits"), seed=3, epochs=100_000, seconds=1.0)
    assert cand.details["stopped"] == "time_budget"
    assert cand.cost.seconds < 1.0 * 1.25 + 1.0  # within the hard limit
    assert cand.cost.epochs == sum(t["epochs"] for t in cand.details["trials"]) < 100_000


def test_tune_leaves_the_incumbent_module_unchanged(improver: SelfImprover) -> None:
    _register_weak_digits(improver)
    inc = improver.load("digits")
    before = {k: v.clone() for k, v in inc.module.state_dict().items()}
    cand = _apply(inc, seed=5, epochs=10)
    after = inc.module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not inc.module.training
    own = {p.data_ptr() for p in inc.module.parameters()}
    assert cand.module is not inc.module
    assert own.isdisjoint(p.data_ptr() for p in cand.module.parameters())


def test_tune_is_not_applicable_to_latency(improver: SelfImprover) -> None:
    _register_weak_digits(improver)
    out = improver.loop.improve("digits", cycle=1, strategy=TuneStrategy(), objective="latency_ms")
    assert out.status == "not_applicable" and "latency_ms" in out.reason
    assert improver.store.list_experiments() == []


def test_tune_rejects_bad_settings_with_the_value_and_the_fix(improver: SelfImprover) -> None:
    _register_weak_digits(improver)
    inc = improver.load("digits")
    with pytest.raises(ConfigError, match="'asha'"):
        _apply(inc, seed=0, epochs=5, pruner="asha")
    with pytest.raises(ConfigError, match=r"does not understand the settings \['n_trial'\]"):
        _apply(inc, seed=0, epochs=5, n_trial=3)
    with pytest.raises(ConfigError, match="trial_epochs"):
        _apply(inc, seed=0, epochs=5, trial_epochs=6)  # a trial cannot exceed the budget


def test_tune_with_the_median_pruner_runs_and_counts_its_epochs(improver: SelfImprover) -> None:
    _register_weak_digits(improver)
    cand = _apply(improver.load("digits"), seed=4, epochs=24, pruner="median", trial_epochs=4)
    d = cand.details
    assert d["pruner"].startswith("MedianPruner")
    assert cand.cost.epochs == sum(t["epochs"] for t in d["trials"]) <= 24


def test_selection_holdout_is_carved_from_the_training_split_only() -> None:
    # Each example's first feature is its index, so examples can be told apart.
    x = np.stack([np.arange(200.0), np.zeros(200)], axis=1).astype(np.float32)
    task = SupervisedTask.regression(
        "carve_test", x, x[:, 0] % 7, build=lambda p: build_mlp(2, 1, p), default_params={}
    )
    fit_task, holdout = carve_selection_holdout(task, 0.15, seed=7)
    full = task.splits()

    def ids(t: torch.Tensor) -> set[int]:
        return {int(v) for v in t[:, 0]}

    fit, hold = ids(fit_task.splits().train.x), ids(holdout.x)
    assert fit.isdisjoint(hold) and fit | hold == ids(full.train.x)
    assert len(hold) == round(0.15 * len(full.train))
    assert hold.isdisjoint(ids(full.validation.x) | ids(full.test.x))
    # Seeded: the same seed gives the same holdout, another seed another.
    assert ids(carve_selection_holdout(task, 0.15, seed=7)[1].x) == hold
    assert ids(carve_selection_holdout(task, 0.15, seed=8)[1].x) != hold
    # Trials train on the subset; validation and test stay the judge's, untouched.
    assert fit_task.splits().validation is full.validation and fit_task.splits().test is full.test


def test_a_diverging_trial_is_failed_and_charged_the_epoch_it_ran() -> None:
    task = resolve_task("pattern_recognition")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = task.build(WEAK)
    cfg = TrainConfig(epochs=3, lr=1e12, optimizer="sgd", clip_norm=None, seed=0)
    run = train_trial(module, task, cfg, check=None)
    assert run.state == "failed" and "diverged" in run.reason and run.epochs == 1


def test_optuna_logging_is_restored_after_a_study(improver: SelfImprover) -> None:
    import optuna

    _register_weak_digits(improver)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        _apply(improver.load("digits"), seed=0, epochs=4, trial_epochs=2)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


def test_the_settings_that_won_before_are_tried_first(improver: SelfImprover) -> None:
    _register_weak_digits(improver)
    inc = improver.load("digits")
    won = {"lr": 0.01, "weight_decay": 1e-5, "batch_size": 64, "schedule": "cosine"}
    outside = {**won, "lr": 99.0}  # outside the space: not tried
    ctx = StrategyContext(
        task=inc.task,
        objective="accuracy",
        budget=Budget(epochs=12, seconds=60.0),
        seed=5,
        warm_starts=({**won, "dropout": 0.1}, outside),
    )
    cand = TuneStrategy().apply(inc, ctx)
    first = cand.details["trials"][0]["params"]
    assert first == {**won, "dropout": 0.1}
    assert cand.details["warm_starts"] == [first]


def test_the_loop_hands_tune_the_settings_of_its_earlier_winners(improver: SelfImprover) -> None:
    _register_weak_digits(improver)
    budget = Budget(12, 60)
    first = improver.loop.improve("digits", cycle=1, strategy=TuneStrategy(), budget=budget)
    won = improver.store.get_experiment(first.experiment_id).statistics  # type: ignore[arg-type]
    assert won["strategy_details"]["warm_starts"] == []  # nothing earlier
    second = improver.loop.improve("digits", cycle=2, strategy=TuneStrategy(), budget=budget)
    exp = improver.store.get_experiment(second.experiment_id)  # type: ignore[arg-type]
    d = exp.statistics["strategy_details"]
    assert d["warm_starts"] == [won["strategy_details"]["best_params"]]
    assert d["trials"][0]["params"] == won["strategy_details"]["best_params"]
