"""The seed-000 system: planning, brain signals, the async loop, and every config field."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import pytest
import torch

from selfimprove.brain.planning import Observation, TaskRules
from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.loop.improver import SelfImprover
from selfimprove.loop.system import SelfImprovingNeuralSystem
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.objectives import Direction, Objective
from selfimprove.store import Decision, ExperimentStatus, VersionStatus
from selfimprove.tasks import MLP_SPACE, SupervisedTask
from tests.conftest import wine_task

FAST = dict(train_epochs=15, train_seconds=20.0)


def _system(home: Path, **cfg: object) -> SelfImprovingNeuralSystem:
    config = SelfImprovementConfig(**{**FAST, **cfg})  # type: ignore[arg-type]
    return SelfImprovingNeuralSystem(home=home, config=config, seed=0)


def _add_wine(sys_: SelfImprovingNeuralSystem, name: str, epochs: int, width: int = 16) -> None:
    task = wine_task()
    torch.manual_seed(0)
    module = task.build({"width": width, "depth": 1})
    train_(module, task, TrainConfig(epochs=epochs, lr=1e-3, seed=0))
    sys_.improver.register_model(name, task, module, {"width": width, "depth": 1})


def test_cycles_improve_the_builtin_models(tmp_path: Path) -> None:
    s = _system(tmp_path)
    s.improver.ensure_builtin_models()
    first = s.improver.registry.incumbent("pattern_recognition").metrics["validation_accuracy"]
    metrics = [s.run_cycle_sync(["pattern_recognition", "neural_sort"]) for _ in range(2)]
    assert [m.iteration for m in metrics if m] == [1, 2]
    assert sum(m.models_improved for m in metrics if m) >= 1
    now = s.improver.registry.incumbent("pattern_recognition").metrics["validation_accuracy"]
    assert now > first
    rows = s.store.list_cycle_metrics()
    assert len(rows) == 2 and rows[0]["hormone_levels"]["dopamine"] > 0.5
    assert all(
        e.decision is not None or e.status.value == "failed" for e in s.store.list_experiments()
    )
    s.close()


def _obs(model: str, value: float, latency: float) -> Observation:
    acc = Objective("accuracy", Direction.MAXIMIZE, target=0.97, ideal=1.0)
    return Observation(model, f"task_{model}", "fam", acc, value, latency, 1)


def test_hormones_change_the_order_of_tasks(tmp_path: Path) -> None:
    s = _system(tmp_path, genetic_enhanced=False)
    # inaccurate: training task, priority 0.237 x 0.5; slow: optimisation task, 0.21 x 0.5
    obs = {"inaccurate": _obs("inaccurate", 0.74, 1.0), "slow": _obs("slow", 0.99, 242.0)}
    order = lambda: [t.model_id for t in s.plan(obs, {})]  # noqa: E731
    assert order() == ["inaccurate", "slow"]
    s.hormone_system.set_level("cortisol", 0.8)  # stress: optimisation first
    assert order() == ["slow", "inaccurate"]
    s.hormone_system.set_level("dopamine", 0.9)  # reward-seeking wins back
    assert order() == ["inaccurate", "slow"]
    s.close()


def test_judge_decisions_do_not_depend_on_hormones(tmp_path: Path) -> None:
    results = []
    for i, (dopamine, cortisol) in enumerate([(0.5, 0.3), (0.7, 0.7)]):  # same budget scale
        s = _system(tmp_path / str(i))
        _add_wine(s, "wine", epochs=1)
        s.hormone_system.set_level("dopamine", dopamine)
        s.hormone_system.set_level("cortisol", cortisol)
        s.hormone_system.set_level("adrenaline", 0.9)  # wider exploration
        task = asyncio.run(s.add_custom_improvement_task("wine", "train", priority=2.0))
        out = asyncio.run(s.execute_improvement_task(task, cycle=1))
        results.append((out.decision, out.before, out.after, out.p_value))
        s.close()
    assert results[0] == results[1]


def test_custom_task_goes_first_with_the_users_priority(tmp_path: Path) -> None:
    s = _system(tmp_path)
    _add_wine(s, "wine", epochs=1)
    task = asyncio.run(s.add_custom_improvement_task("wine", "retrain", priority=5.0))
    assert (task.strategy, task.kind, task.custom) == ("retrain", "training", True)
    planned = s.generate_tasks_sync()
    assert planned[0] == task
    s.run_cycle_sync()
    assert s.improvement_history[-1]["strategy"] == "retrain"
    assert s.cycle.planner.queue == []  # consumed
    with pytest.raises(NotFoundError):
        asyncio.run(s.add_custom_improvement_task("nope", "training"))
    with pytest.raises(ConfigError, match="improvement_type"):
        asyncio.run(s.add_custom_improvement_task("wine", "magic"))
    s.close()


def test_distillation_task_when_a_stronger_peer_exists(tmp_path: Path) -> None:
    s = _system(tmp_path)
    rules = TaskRules()
    peers = [_obs("weak", 0.9, 1.0), _obs("strong", 0.99, 1.0)]
    peers = [
        Observation(o.model, "same", o.family, o.primary, o.value, o.latency_ms, 1) for o in peers
    ]
    from selfimprove.brain.planning import find_weaknesses

    kinds = {w.kind for w in find_weaknesses(peers[0], peers, rules)}
    assert "distillation" in kinds
    assert "distillation" not in {
        w.kind for w in find_weaknesses(peers[0], peers, rules, distill=False)
    }
    s.close()


def test_async_loop_starts_forces_and_stops_cleanly(tmp_path: Path) -> None:
    s = _system(tmp_path, improvement_interval=3600.0, auto_start=True)
    _add_wine(s, "wine", epochs=1)

    async def scenario() -> tuple[int, int]:
        await s.initialize()  # auto_start: the loop runs its first cycle, then sleeps
        for _ in range(600):
            if s.iteration >= 1 and not s._cycle_lock.locked():  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        first = s.iteration
        await s.force_improvement_cycle()  # while the loop sleeps
        forced = s.iteration
        await s.stop_self_improvement_loop()
        assert not s.running
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert pending == []
        return first, forced

    before = set(threading.enumerate())
    first, forced = asyncio.run(scenario())
    assert (first, forced) == (1, 2)
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("selfimprove")]
    s.close()


# ---------------------------------------------------------------- each config field


def test_enabled_false_runs_nothing(tmp_path: Path) -> None:
    s = _system(tmp_path, enabled=False)
    _add_wine(s, "wine", epochs=1)
    assert s.run_cycle_sync() is None
    with pytest.raises(ConfigError, match="disabled"):
        asyncio.run(s.start_self_improvement_loop())
    assert s.store.list_experiments() == []
    s.close()


def test_auto_start_false_does_not_start_the_loop(tmp_path: Path) -> None:
    s = _system(tmp_path, auto_start=False)
    _add_wine(s, "wine", epochs=1)

    async def go() -> bool:
        await s.initialize()
        return s.running

    assert asyncio.run(go()) is False
    s.close()


def test_improvement_interval_paces_the_loop(tmp_path: Path) -> None:
    s = _system(tmp_path, improvement_interval=0.2, train_epochs=2)
    _add_wine(s, "wine", epochs=1)

    async def go() -> int:
        await s.start_self_improvement_loop()
        for _ in range(400):
            if s.iteration >= 3:
                break
            await asyncio.sleep(0.05)
        await s.stop_self_improvement_loop()
        return s.iteration

    assert asyncio.run(go()) >= 3
    s.close()


def test_max_concurrent_improvements_bounds_tasks_per_cycle(tmp_path: Path) -> None:
    s = _system(tmp_path, max_concurrent_improvements=1)
    _add_wine(s, "a", epochs=1)
    _add_wine(s, "b", epochs=1)
    s.run_cycle_sync()
    assert len(s.store.list_experiments()) == 1
    assert s.executor.max_workers == 1
    s.close()


def test_performance_threshold_is_the_judges(tmp_path: Path) -> None:
    s = _system(tmp_path, performance_threshold=0.99)
    _add_wine(s, "wine", epochs=1)
    s.run_cycle_sync()
    (exp,) = s.store.list_experiments()
    assert exp.decision is Decision.REJECT and "required −99%" in exp.reason
    s.close()


def test_hormone_driven_false_ignores_hormones(tmp_path: Path) -> None:
    s = _system(tmp_path, hormone_driven=False, genetic_enhanced=False)
    s.hormone_system.set_level("dopamine", 0.95)
    tasks = s.plan({"m": _obs("m", 0.5, 1.0)}, {})
    assert tasks[0].hormone_multiplier == 1.0
    assert s.cycle.budget().epochs == FAST["train_epochs"]
    s.close()


def test_genetic_enhanced_false_ignores_triggers(tmp_path: Path) -> None:
    from selfimprove.brain.triggers import Trigger

    for enhanced, expected in ((True, 2.0), (False, 1.0)):
        s = _system(tmp_path / str(enhanced), genetic_enhanced=enhanced)
        s.genetic_system.population = [
            Trigger("always", (), f, 2.0)
            for f in ("training", "architecture", "optimisation", "distillation")
        ]
        (task,) = s.plan({"m": _obs("m", 0.5, 1.0)}, {})
        assert task.trigger_boost == expected
        s.close()


def test_cross_model_distillation_false_proposes_no_teacher(tmp_path: Path) -> None:
    peers = {"weak": _obs("weak", 0.99, 1.0), "strong": _obs("strong", 0.999, 1.0)}
    peers = {
        k: Observation(o.model, "same", o.family, o.primary, o.value, o.latency_ms, 1)
        for k, o in peers.items()
    }
    on = _system(tmp_path / "on")
    off = _system(tmp_path / "off", cross_model_distillation=False)
    assert [t.kind for t in on.plan(peers, {})] == ["distillation"]
    assert off.plan(peers, {}) == []
    on.close()
    off.close()


@pytest.mark.usefixtures("store_url")
def test_model_backup_disabled_prunes_replaced_incumbents(tmp_path: Path) -> None:
    s = _system(tmp_path, model_backup_enabled=False)
    _add_wine(s, "wine", epochs=1)
    asyncio.run(s.add_custom_improvement_task("wine", "train"))
    s.run_cycle_sync()
    assert s.improver.registry.incumbent("wine").number == 2, "expected a promotion"
    assert s.improver.registry.version("wine", 1).status is VersionStatus.PRUNED
    with pytest.raises(NotFoundError, match="no previous incumbent"):
        s.improver.rollback("wine")
    s.close()


def test_improvement_history_size_caps_history(tmp_path: Path) -> None:
    s = _system(tmp_path, improvement_history_size=2, train_epochs=2)
    for name in ("a", "b", "c"):
        _add_wine(s, name, epochs=1)
    s.run_cycle_sync()
    assert len(s.improvement_history) == 2
    s.close()


@pytest.mark.usefixtures("store_url")
def test_brain_state_survives_a_restart(tmp_path: Path) -> None:
    s = _system(tmp_path)
    _add_wine(s, "wine", epochs=1)
    s.run_cycle_sync()
    levels, pop = s.hormone_system.get_hormone_levels(), s.genetic_system.population
    s.close()
    again = _system(tmp_path)
    assert again.hormone_system.get_hormone_levels() == levels
    assert again.genetic_system.population == pop
    assert again.bandit.contexts() == s.bandit.contexts()
    status = again.status_sync()
    assert status["iteration"] == 1 and "hormones" in status and "triggers" in status
    again.close()


@pytest.mark.usefixtures("store_url")
def test_export_has_everything_and_caps_history(tmp_path: Path) -> None:
    import csv
    import io
    import json

    s = _system(tmp_path, improvement_history_size=1, train_epochs=2)
    _add_wine(s, "wine", epochs=1)
    s.run_cycle_sync()
    s.run_cycle_sync()
    data = json.loads(s.improver.export("json"))
    assert len(data["cycle_metrics"]) == 1 and data["cycle_metrics"][0]["iteration"] == 2
    assert set(data["brain_state"]) == {"hormones", "triggers", "bandit"}
    rows = list(csv.DictReader(io.StringIO(s.improver.export("csv", table="cycle_metrics"))))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert json.loads(rows[0]["hormone_levels"])["dopamine"] >= 0
    with pytest.raises(ConfigError, match="export table"):
        s.improver.export("csv", table="nope")
    # the insights folded cycle by cycle are those of the whole ledger
    from selfimprove.meta.insights import derive_insights

    stored = {
        (r.kind, r.subject): (r.count, r.successes, r.statement)
        for r in s.store.list_meta_learnings()
        if r.kind in ("strategy_effect", "guard_held", "failure_mode")
    }
    whole = {
        (i.kind, i.subject): (i.count, i.successes, i.statement) for i in derive_insights(s.store)
    }
    assert stored == whole and whole
    s.close()


def test_gain_model_takes_over_priority_when_it_beats_the_bandit(tmp_path: Path) -> None:
    from selfimprove.meta.gain import register_gain_model
    from selfimprove.strategies import Budget
    from tests.meta.test_gain_model import _synthetic_history

    s = _system(tmp_path)
    assert s.priority_source == "bandit" and s.status_sync()["priority_source"] == "bandit"
    _synthetic_history(s.store, 60, seed=0, by="size")
    name = register_gain_model(s.improver, s.store, seed=0)
    out = s.improver.improve(
        name,
        "train",
        budget=Budget(epochs=300, seconds=300.0),
        params={"lr": 1e-2, "patience": 0, "schedule": "constant"},
    )
    assert out.decision is Decision.PROMOTE, out.reason
    s.close()
    again = _system(tmp_path)  # a new process: the task is rebuilt from the history
    assert again.priority_source == "gain_model", again.gain_comparison
    assert again.gain_comparison["p_value"] < 0.05  # type: ignore[index]
    acc = Objective("accuracy", Direction.MAXIMIZE, target=0.95, ideal=1.0)
    big = Observation("large", "synthetic_task", "tabular", acc, 0.8, 1.0, 1)
    small = Observation("small", "synthetic_task", "tabular", acc, 0.8, 1.0, 1)
    tasks = {t.model_id: t for t in again.plan({"large": big, "small": small}, {})}
    assert tasks["large"].expected_gain > tasks["small"].expected_gain  # the size it learnt
    assert again.status_sync()["priority_source"] == "gain_model"
    assert (
        again.store.list_meta_learnings(kind="gain_model_vs_bandit")
        or again.store.list_meta_learnings()
    )
    again.close()


def test_initialize_serves_the_hormone_response_through_its_alternative(tmp_path: Path) -> None:
    from selfimprove.alternatives.builtin import HormoneNeuralIntegration

    s = _system(tmp_path, auto_start=False)

    async def go() -> dict[str, object]:
        await s.initialize()
        return await s.get_improvement_status()

    status = asyncio.run(go())
    assert isinstance(s.hormone_integration, HormoneNeuralIntegration)
    names = {m.name for m in s.store.list_models()}
    assert {"pattern_recognition", "hormone_response", "memory_consolidation"} <= names
    report = status["hormone_integration"]
    assert isinstance(report, dict) and "levels" in report
    levels = s.hormone_integration.response(event="promotion", gain=0.2)
    assert set(levels) == {"dopamine", "serotonin", "cortisol", "adrenaline"}
    s.close()


def test_fair_share_lifts_models_that_waited(tmp_path: Path) -> None:
    s = _system(tmp_path, genetic_enhanced=False, hormone_driven=False)
    _add_wine(s, "a", epochs=1)
    _add_wine(s, "b", epochs=1)
    s.improver.loop.improve("a", cycle=1)  # "a" was just worked on
    obs = {
        n: Observation(n, "wine_test", "wine_test", _obs(n, 0.7, 1.0).primary, 0.7, 1.0, 1)
        for n in ("a", "b")
    }
    tasks = {t.model_id: t for t in s.plan(obs, {})}
    assert (tasks["a"].waiting, tasks["b"].waiting) == (1, 10)
    ratio = tasks["b"].priority / tasks["b"].expected_gain
    ratio /= tasks["a"].priority / tasks["a"].expected_gain
    assert ratio == pytest.approx(6.0 / 1.5)
    s.close()


def test_the_engine_sees_the_systems_weaknesses_and_cycles(tmp_path: Path) -> None:
    from selfimprove.engine import SelfImprovementEngine

    s = _system(tmp_path)
    _add_wine(s, "wine", epochs=1)
    s.run_cycle_sync()
    s.close()
    engine = SelfImprovementEngine(home=tmp_path)
    try:
        caps = {c.name for c in engine.profile_all_capabilities()}
        assert "wine/accuracy" in caps
        weak = [w for w in engine.store.list_weaknesses() if w.capability_id is not None]
        assert weak, "the system's below-target accuracy should be an engine weakness"
        history = engine.get_improvement_history(5)
        assert history and history[0].version == "cycle-1"
    finally:
        engine.close()


def test_training_that_stalled_escalates_to_architecture() -> None:
    from selfimprove.brain.planning import find_weaknesses

    rules = TaskRules()
    obs = _obs("m", 0.95, 1.0)  # short of its 0.97 target: the seed's rule says training
    assert [w.kind for w in find_weaknesses(obs, [obs], rules)] == ["training"]
    stalled = dataclasses.replace(obs, training_stalled=1)
    assert [w.kind for w in find_weaknesses(stalled, [stalled], rules)] == ["training"]
    stalled = dataclasses.replace(obs, training_stalled=2)
    (w,) = find_weaknesses(stalled, [stalled], rules)
    assert w.kind == "architecture" and "training stalled (2" in w.reason
    never = TaskRules(stalled_after=0)
    assert [w.kind for w in find_weaknesses(stalled, [stalled], never)] == ["training"]
    with pytest.raises(ConfigError, match="stalled_after"):
        TaskRules(stalled_after=-1)


@pytest.mark.parametrize("searchable", [True, False])
def test_the_system_counts_stalled_training_from_the_ledger(
    tmp_path: Path, searchable: bool
) -> None:
    s = _system(tmp_path)
    base = wine_task(f"wine_space_{searchable}")
    task = SupervisedTask(
        base.name,
        kind="classification",
        splits=base.splits(),
        build=base.build,
        default_params={"width": 16, "depth": 1},
        target=0.99,
        search_space=MLP_SPACE if searchable else None,
    )
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    s.improver.register_model("wine", task, module, {"width": 16, "depth": 1})
    model = s.store.get_model("wine")

    def finished(strategy: str, decision: Decision | None, status: ExperimentStatus) -> None:
        e = s.store.add_experiment(model_id=model.id, strategy=strategy, cycle=1)
        s.store.update_experiment(e.id, status=status, decision=decision)

    finished("train", Decision.PROMOTE, ExperimentStatus.COMPLETED)
    finished("train", Decision.REJECT, ExperimentStatus.COMPLETED)
    finished("evolve", Decision.REJECT, ExperimentStatus.COMPLETED)  # not training: no count
    finished("tune", None, ExperimentStatus.FAILED)
    assert s.cycle.planner.history()[1] == {"wine": 2}
    obs, _ = s.cycle.observe()
    (task_,) = s.plan(obs, {})
    assert "training stalled" in task_.reason
    assert task_.kind == "architecture"  # tune keeps the architecture: not among the arms
    # evolve searches the task's space (or, without one, a space inferred around the
    # incumbent's build_mlp params); grow grows the incumbent
    assert task_.strategy in ("evolve", "grow")
    assert s.cycle.planner.searchable(obs["wine"])
    # A strategy that refused this incumbent version is not planned again for it; with no
    # architecture strategy left, the training strategies serve the weakness.
    s.cycle.planner.refused["wine"] = {"grow": obs["wine"].version, "evolve": obs["wine"].version}
    (task_,) = s.plan(obs, {})
    assert task_.kind == "training" and "no architecture strategy applies" in task_.reason
    s.cycle.planner.refused.clear()
    finished("evolve", Decision.PROMOTE, ExperimentStatus.COMPLETED)  # any promotion resets
    assert s.cycle.planner.history()[1] == {"wine": 0}


def test_a_strategy_the_judge_keeps_rejecting_on_a_model_is_no_longer_planned(
    tmp_path: Path,
) -> None:
    from selfimprove.brain.streaks import REJECTION_LIMIT

    s = _system(tmp_path)
    task = wine_task("wine_spent")
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    s.improver.register_model("wine", task, module, {"width": 16, "depth": 1})
    model = s.store.get_model("wine")

    def rejected(strategy: str, n: int) -> None:
        for _ in range(n):
            e = s.store.add_experiment(model_id=model.id, strategy=strategy, cycle=1)
            s.store.update_experiment(
                e.id, status=ExperimentStatus.COMPLETED, decision=Decision.REJECT
            )

    obs, _ = s.cycle.observe()
    rejected("evolve", REJECTION_LIMIT)
    rejected("grow", REJECTION_LIMIT - 1)
    assert s.cycle.planner.history()[2] == {"wine": {"evolve": REJECTION_LIMIT, "grow": 2}}
    arms = s.cycle.planner.usable_arms(
        "architecture", obs["wine"], s.cycle.planner.history()[2]["wine"]
    )
    assert arms == ["grow"]  # evolve is spent on this model, grow is not yet
    rejected("grow", 1)
    for strategy in ("train", "retrain", "tune"):
        rejected(strategy, REJECTION_LIMIT)
    # every strategy spent: the model gets no task, its budget goes elsewhere
    assert s.plan(obs, {}) == []
    e = s.store.add_experiment(model_id=model.id, strategy="train", cycle=2)
    s.store.update_experiment(e.id, status=ExperimentStatus.COMPLETED, decision=Decision.PROMOTE)
    assert s.cycle.planner.history()[2] == {"wine": {}}  # a promotion is a new situation
    assert len(s.plan(obs, {})) == 1


def test_the_strongest_peer_is_found_once_per_task() -> None:
    from selfimprove.brain.planning import find_weaknesses, strongest_by_task

    rules = TaskRules()
    peers = [_obs("a", 0.9, 1.0), _obs("b", 0.99, 1.0), _obs("c", 0.95, 1.0)]
    # _obs gives every model its own task: put a, b and c on one task, d alone on another
    peers = [dataclasses.replace(q, task="t") for q in peers] + [_obs("d", 0.5, 1.0)]
    best = strongest_by_task(peers)
    assert {k: v.model for k, v in best.items()} == {"t": "b", "task_d": "d"}
    broken = dataclasses.replace(peers[0], model="nan", value=float("nan"))
    assert strongest_by_task([broken, *peers])["t"].model == "b"  # NaN first: not the best
    for obs in peers:  # the same weaknesses with the map as with the plain scan
        assert find_weaknesses(obs, peers, rules, best_by_task=best) == find_weaknesses(
            obs, peers, rules
        )
    (w,) = [w for w in find_weaknesses(peers[0], peers, rules) if w.kind == "distillation"]
    assert w.teacher == "b"
    assert not [w for w in find_weaknesses(peers[1], peers, rules) if w.kind == "distillation"]


@pytest.mark.usefixtures("store_url")
def test_the_engine_fed_each_cycle_shares_the_one_store(home: Path) -> None:
    with SelfImprovingNeuralSystem(home=home, config=SelfImprovementConfig(**FAST), seed=0) as s:
        s.improver.ensure_builtin_models()
        assert s.cycle.learner.engine is None
        s.run_cycle_sync(models=["neural_sort"])
        engine = s.cycle.learner.engine
        assert engine is not None and engine.store is s.store  # no second connection pool
        assert engine.profile_all_capabilities()  # the models' objectives, seen by the engine
    assert s.cycle.learner.engine is None  # closed with the system


def test_selfimprover_run_is_the_planned_loop_and_the_plain_one_is_an_option(home: Path) -> None:
    with SelfImprover(home, config=SelfImprovementConfig(**FAST), seed=0) as si:
        si.ensure_builtin_models()
        planned = si.run(1, models=["neural_sort"])
        assert si.cycle.last_tasks and planned[0].strategy == si.cycle.last_tasks[0].strategy
        metrics = si.store.list_cycle_metrics(limit=1)
        assert metrics and metrics[0]["extra"]["tasks"]  # a planned cycle records its tasks
        plain = si.run(1, models=["neural_sort"], planned=False)
        assert [o.strategy for o in plain] == ["train"] or plain[0].status == "skipped"
        with pytest.raises(ConfigError, match="cycles must be between 1 and"):
            si.run(0)


def test_models_another_system_records_are_left_out_of_the_loops(home: Path) -> None:
    with SelfImprover(home, config=SelfImprovementConfig(**FAST), seed=0) as si:
        si.ensure_builtin_models()
        # What a plasticity run records: a model whose checkpoints are that run's folders.
        si.store.add_model("tiny:run-1", task="external:language-model:pydoc", family="gpt2")
        si.run(1)
        assert si.cycle.last_outcomes  # the built-in models were planned for
        assert all(o.model != "tiny:run-1" for o in si.cycle.last_outcomes)
        assert "tiny:run-1" not in si.cycle.unusable
        assert all(o.model != "tiny:run-1" for o in si.run(1, planned=False))
        assert not [e for e in si.store.list_events() if e.kind == "checkpoint_error"]
