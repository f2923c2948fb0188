"""The gain model: features from a real history, time-ordered splits, registration, the loop
improving it (the recursion), and its decision against the bandit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfimprove.brain.planning import KINDS
from selfimprove.errors import ConfigError, TaskError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain import (
    FAMILY_BUCKETS,
    FEATURE_NAMES,
    FEATURE_STRATEGIES,
    GAIN_MODEL_NAME,
    GainPredictionTask,
    GainPredictor,
    compare_with_bandit,
    encode_features,
    experiment_facts,
    experiment_features,
    family_bucket,
    register_gain_model,
    time_split_sizes,
)
from selfimprove.meta.insights import record_comparison
from selfimprove.store import Decision, ExperimentStatus, Store, VersionStatus
from selfimprove.strategies import STRATEGIES, Budget
from tests.conftest import wine_task

SMALL = Budget(epochs=2, seconds=10.0)
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _register_wine(si: SelfImprover) -> None:
    """Two weak wine models of different families and sizes."""
    for name, family_task, width in (("narrow", "wine_a", 8), ("wide", "wine_b", 300)):
        task = wine_task(family_task)
        torch.manual_seed(0)
        module = task.build({"width": width, "depth": 1})
        train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
        si.register_model(name, task, module, {"width": width, "depth": 1})


def _run_history(si: SelfImprover, first_cycle: int, cycles: int) -> None:
    """Real experiments: train / retrain with small budgets, a prune, and a diverging one."""
    for cycle in range(first_cycle, first_cycle + cycles):
        for j, name in enumerate(("narrow", "wide")):
            strategy = "train" if (cycle + j) % 2 else "retrain"
            si.loop.improve(
                name, cycle=cycle, strategy=strategy, budget=SMALL, only_below_target=False
            )
        if cycle == first_cycle:
            si.loop.improve("wide", cycle=cycle, strategy="prune", only_below_target=False)
            si.loop.improve(  # lr 1e12 diverges: a failed experiment, recorded
                "narrow",
                cycle=cycle,
                strategy="train",
                budget=SMALL,
                params={"lr": 1e12, "optimizer": "sgd", "clip_norm": None},
                only_below_target=False,
            )


def test_features_come_from_the_real_history(improver: SelfImprover) -> None:
    _register_wine(improver)
    _run_history(improver, 1, 3)
    store = improver.store
    x, y, ids = experiment_features(store)
    finished = [
        e
        for e in store.list_experiments()
        if e.status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    ]
    assert ids == [e.id for e in finished] and len(ids) == 8
    assert x.shape == (8, len(FEATURE_NAMES)) and y.shape == (8,)
    assert len(FEATURE_NAMES) == len(FEATURE_STRATEGIES) + len(KINDS) + FAMILY_BUCKETS + 5
    assert set(FEATURE_STRATEGIES) <= set(STRATEGIES)  # a later strategy encodes as zeros
    assert any(e.status is ExperimentStatus.FAILED for e in finished)
    assert any(e.objective == "size_bytes" for e in finished)
    models = {m.id: m for m in store.list_models()}
    for row, target, exp in zip(x, y, finished, strict=True):
        model = models[exp.model_id]  # type: ignore[index]
        inc = store.version_by_id(exp.incumbent_version_id)  # type: ignore[arg-type]
        # one-hots: exactly the experiment's strategy, its kind, its family's bucket
        assert row[COL[f"strategy={exp.strategy}"]] == 1.0
        assert sum(row[COL[f"strategy={s}"]] for s in FEATURE_STRATEGIES) == 1.0
        assert row[COL[f"kind={STRATEGIES[exp.strategy].family}"]] == 1.0
        assert row[COL[f"family_bucket={family_bucket(model.family)}"]] == 1.0
        assert row[COL["log10_parameters"]] == pytest.approx(
            math.log10(inc.metrics["parameters"]) / 6, rel=1e-6
        )
        assert row[COL["log10_epochs"]] == pytest.approx(
            math.log10(1 + exp.params["budget"]["epochs"]) / 2, rel=1e-6
        )
        model_level = exp.objective == "size_bytes"
        assert row[COL["model_level_objective"]] == float(model_level)
        if model_level:  # size has no target: no gap can be known
            assert row[COL["gap_known"]] == 0.0 and row[COL["log1p_gap"]] == 0.0
        else:  # accuracy vs the target 0.99, from the judge's "before" (or the version metric)
            before = exp.statistics.get("before", inc.metrics["validation_accuracy"])
            gap = max(0.0, 0.99 - before) / 0.99
            assert row[COL["gap_known"]] == 1.0
            assert row[COL["log1p_gap"]] == pytest.approx(math.log1p(gap), rel=1e-5)
        rel = exp.statistics.get("relative_improvement")
        assert target == pytest.approx(rel if exp.decision is Decision.PROMOTE else 0.0)
        if exp.status is ExperimentStatus.FAILED:
            assert target == 0.0
    # the wide model has ~100x the narrow one's parameters: the size column tells them apart
    by_model = {models[e.model_id].name: row for e, row in zip(finished, x, strict=True)}  # type: ignore[index]
    assert by_model["wide"][COL["log10_parameters"]] > by_model["narrow"][COL["log10_parameters"]]


def test_planned_kind_is_read_from_the_systems_cycle_metrics(improver: SelfImprover) -> None:
    from selfimprove.loop.system import SelfImprovingNeuralSystem

    _register_wine(improver)
    system = SelfImprovingNeuralSystem(improver=improver)
    system.run_cycle_sync()
    tasks = {(t.model_id, t.strategy): t.kind for t in system.last_tasks}
    facts = experiment_facts(improver.store)
    assert facts and len(facts) == len(tasks)
    for f in facts:
        assert f.kind_recorded and f.kind == tasks[(f.model, f.strategy)]
    x, _, _ = experiment_features(improver.store)
    for f, row in zip(facts, x, strict=True):
        assert row[COL[f"kind={f.kind}"]] == 1.0
    system.executor.close()


def test_time_ordered_splits_do_not_overlap(improver: SelfImprover) -> None:
    _register_wine(improver)
    _run_history(improver, 1, 4)
    task = GainPredictionTask(improver.store, min_experiments=5)
    train, val, test = (task.split_ids[s] for s in ("train", "validation", "test"))
    n = len(train) + len(val) + len(test)
    assert (len(train), len(val), len(test)) == time_split_sizes(n) == (6, 2, 2)
    assert max(train) < min(val) and max(val) < min(test)  # oldest train, newest test
    assert set(train).isdisjoint(val) and set(val).isdisjoint(test)
    assert task.fit_through_id == max(val)
    x, y, _ = experiment_features(improver.store)
    np.testing.assert_array_equal(task.splits().test.x.numpy(), x[-2:])
    np.testing.assert_array_equal(task.splits().train.y.numpy()[:, 0], y[:6])
    y_val = y[6:8].astype(np.float64)
    constant = min(np.mean((y_val - y[:6].mean()) ** 2), np.mean(y_val**2))
    assert task.primary.name == "mse"
    assert task.primary.target == pytest.approx(max(0.5 * constant, 1e-6), rel=1e-5)
    assert [time_split_sizes(k) for k in (3, 10, 30, 31)] == [
        (1, 1, 1),
        (6, 2, 2),
        (18, 6, 6),
        (18, 6, 7),
    ]


def test_register_refuses_below_the_minimum_then_the_loop_improves_it(
    improver: SelfImprover,
) -> None:
    _register_wine(improver)
    _run_history(improver, 1, 4)
    n = len(experiment_features(improver.store)[2])
    with pytest.raises(TaskError, match=rf"at least 30 finished experiments.*holds {n};"):
        register_gain_model(improver, improver.store, seed=0)
    assert improver.store.find_model(GAIN_MODEL_NAME) is None
    _run_history(improver, 5, 11)  # 11 more cycles of real experiments
    assert len(experiment_features(improver.store)[2]) >= 30
    name = register_gain_model(improver, improver.store, seed=0)
    model = improver.store.get_model(name)
    assert (model.task, model.family) == ("gain_prediction", "meta_learning")
    (outcome,) = improver.run(1, models=[name], planned=False)
    assert outcome.status == "completed", outcome.reason
    exp = improver.store.get_experiment(outcome.experiment_id)  # type: ignore[arg-type]
    assert exp.model_id == model.id and exp.objective == "mse" and exp.decision is not None
    # on this real history (few promotions) nothing shows the gain model significantly better
    predictor = GainPredictor.from_registry(improver.registry)
    result = compare_with_bandit(improver.store, predictor, StrategyBandit(seed=0), alpha=0.05)
    assert result["n"] >= 7 and result["p_value"] >= 0.05 and result["decides"] == "bandit"
    # a new process would call it again: the task is rebuilt, the model kept
    assert register_gain_model(improver, improver.store, seed=0) == name
    assert len(improver.store.list_models()) == 3
    with pytest.raises(ConfigError, match="already exists for task"):
        register_gain_model(improver, improver.store, seed=0, name="wide")


# ---------------------------------------------------------------- against the bandit


def _synthetic_history(store: Store, n: int, seed: int, *, by: str) -> None:
    """Ledger rows of ``n`` experiments on two models of one family (one bandit context).

    ``small`` has 500 parameters and ``large`` 200k; each experiment picks a model and a strategy
    (``train`` or ``retrain``) at random. With ``by="size"`` only ``large`` gains (about 0.30,
    promoted), whatever the strategy: a feature the bandit's (kind, family) context ignores.
    With ``by="strategy"`` only ``train`` gains, whatever the model: exactly what the bandit's
    arms separate.
    """
    rng = np.random.default_rng(seed)
    models = {}
    for name, width, parameters in (("small", 8, 500.0), ("large", 1024, 2e5)):
        model = store.add_model(name, "synthetic_task", "tabular")
        version = store.add_version(
            model_id=model.id,
            number=1,
            parent_id=None,
            status=VersionStatus.INCUMBENT,
            strategy="initial",
            origin="user",
            params={"width": width, "depth": 1},
            metrics={"parameters": parameters, "validation_accuracy": 0.8},
            checkpoint_path="unused",
            manifest_path="unused",
            sha256="0" * 64,
            size_bytes=int(parameters * 4),
        )
        cap = store.upsert_capability(
            f"{name}/accuracy",
            type="model_objective",
            direction="maximize",
            target=0.95,
            model_id=model.id,
            objective="accuracy",
        )
        models[name] = (model, version, cap)
    for i in range(n):
        name = "large" if rng.random() < 0.5 else "small"
        strategy = "train" if rng.random() < 0.5 else "retrain"
        model, version, cap = models[name]
        exp = store.add_experiment(
            model_id=model.id,
            strategy=strategy,
            objective="accuracy",
            capability_id=cap.id,
            params={"budget": {"epochs": 10, "seconds": 30.0}},
            cycle=i + 1,
            seed=i,
            incumbent_version_id=version.id,
            status=ExperimentStatus.RUNNING,
        )
        promoted = name == "large" if by == "size" else strategy == "train"
        rel = 0.3 + 0.02 * rng.standard_normal() if promoted else 0.01 * rng.standard_normal()
        store.update_experiment(
            exp.id,
            status=ExperimentStatus.COMPLETED,
            decision=Decision.PROMOTE if promoted else Decision.REJECT,
            reason="synthetic ledger row",
            statistics={
                "objective": "accuracy",
                "before": 0.8,
                "after": 0.8 + 0.2 * rel,
                "relative_improvement": rel,
                "p_value": 0.001 if promoted else 0.6,
                "guards": {},
            },
            compute={"epochs": 10, "seconds": 2.0 + 0.2 * rng.random()},
        )


def test_bandit_decides_when_the_gain_model_is_worse(improver: SelfImprover) -> None:
    # Gain depends on the strategy only: the bandit's arms capture it; the gain model was just
    # registered (an 8-unit MLP trained one epoch) and has learnt next to nothing yet.
    _synthetic_history(improver.store, 60, seed=0, by="strategy")
    register_gain_model(improver, improver.store, seed=0)
    predictor = GainPredictor.from_registry(improver.registry)
    result = compare_with_bandit(improver.store, predictor, StrategyBandit(seed=0))
    held = result["held_out_ids"]
    assert result["n"] == len(held) == 12 and result["bandit_trained_on"] == 48
    assert min(held) > predictor.fit_through_id
    assert result["bandit_mae"] < 0.05  # per-arm posterior means: close to each arm's gain
    assert result["gain_model_mae"] > result["bandit_mae"] and result["decides"] == "bandit"
    assert "not strictly better" in result["reason"] and result["p_value"] > 0.5
    with pytest.raises(ConfigError, match="alpha"):
        compare_with_bandit(improver.store, predictor, StrategyBandit(seed=0), alpha=1.5)


def test_gain_model_decides_once_the_loop_makes_it_better(improver: SelfImprover) -> None:
    # Gain depends on model size, which the bandit's (kind, family) context cannot see.
    _synthetic_history(improver.store, 60, seed=0, by="size")
    name = register_gain_model(improver, improver.store, seed=0)
    bandit = StrategyBandit(seed=0)
    # the recursion: the same loop improves the gain model, judged on its validation split
    settings = {"lr": 1e-2, "patience": 0, "schedule": "constant"}
    out = improver.improve(name, "train", budget=Budget(epochs=300, seconds=300.0), params=settings)
    assert out.decision is Decision.PROMOTE, out.reason
    predictor = GainPredictor.from_registry(improver.registry)
    result = compare_with_bandit(improver.store, predictor, bandit)
    # the 12 newest synthetic rows, and the experiment on the gain model itself (newer still)
    assert result["n"] == 13
    # the bandit's one arm per strategy mixes both sizes: its error is about the mean gain
    assert 0.1 < result["bandit_mae"] < 0.3
    assert result["gain_model_mae"] < 0.5 * result["bandit_mae"]
    assert result["decides"] == "gain_model" and "strictly better" in result["reason"]
    assert result["gain_model_wins"] >= 11 and result["p_value"] < 0.01  # of 13
    strict = compare_with_bandit(improver.store, predictor, bandit, alpha=0.05)
    assert strict["decides"] == "gain_model"  # significantly better too
    rec = record_comparison(improver.store, result)
    assert (rec.count, rec.successes) == (13, result["gain_model_wins"])
    assert rec.statement.startswith("on 13 held-out experiments") and 0 < rec.confidence <= 1
    assert record_comparison(improver.store, result).id == rec.id  # refreshed, not duplicated


def test_predictor_checks_the_width_of_its_rows(improver: SelfImprover) -> None:
    _synthetic_history(improver.store, 30, seed=1, by="size")
    register_gain_model(improver, improver.store, seed=0)
    predictor = GainPredictor.from_registry(improver.registry)
    row = encode_features(
        strategy="train",
        kind="training",
        family="tabular",
        parameters=2e5,
        gap=0.2,
        epochs=10,
        objective="accuracy",
    )
    assert math.isfinite(predictor.predict(row))
    facts = experiment_facts(improver.store)
    assert predictor.predict(row) == pytest.approx(
        predictor.predict_many(np.stack([row, row]))[1], rel=1e-6
    )
    assert facts[0].kind == "training" and not facts[0].kind_recorded
    with pytest.raises(ConfigError, match="columns"):
        predictor.predict(row[:-1])
    with pytest.raises(TaskError, match="not a gain-prediction task"):
        _register_wine(improver)
        GainPredictor.from_registry(improver.registry, "wide")
