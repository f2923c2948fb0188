from __future__ import annotations

import pytest

from selfimprove.brain.environment import FEATURES, measure_environment
from selfimprove.brain.triggers import Condition, GeneticTriggerSystem, Trigger
from selfimprove.errors import ConfigError
from selfimprove.store import ExperimentStatus, Store, VersionStatus


def test_conditions_and_activity() -> None:
    t = Trigger(
        "x",
        (Condition("error_rate", ">", 0.3), Condition("cpu_load", "<", 0.5)),
        "optimisation",
        1.5,
    )
    assert t.active({"error_rate": 0.4, "cpu_load": 0.1})
    assert not t.active({"error_rate": 0.4, "cpu_load": 0.9})
    assert "error_rate > 0.30" in t.describe()


def test_same_seed_same_population() -> None:
    a, b = GeneticTriggerSystem(seed=4), GeneticTriggerSystem(seed=4)
    assert a.population == b.population
    assert a.population != GeneticTriggerSystem(seed=5).population


def test_boost_multiplies_active_triggers_of_the_family() -> None:
    g = GeneticTriggerSystem(seed=0)
    g.population = [
        Trigger("a", (), "training", 1.5),
        Trigger("b", (), "training", 2.0),
        Trigger("c", (), "optimisation", 3.0),
        Trigger("d", (Condition("cpu_load", ">", 0.9),), "training", 9.0),
    ]
    mult, ids = g.boost("training", {"cpu_load": 0.1})
    assert mult == pytest.approx(3.0) and ids == ["a", "b"]


def test_trigger_boosting_a_working_strategy_gains_fitness_and_survives() -> None:
    g = GeneticTriggerSystem(population_size=6, seed=1, elite=1)
    env = {f: 0.5 for f in FEATURES}
    good = Trigger("good", (), "optimisation", 1.5)
    bad = Trigger("bad", (), "training", 1.5)
    g.population = [good, bad, *g.population[2:]]
    for _ in range(10):  # optimisation experiments pay, training ones do not
        g.record_outcome(g.boost("optimisation", env)[1], gain=0.3)
        g.record_outcome(g.boost("training", env)[1], gain=0.0)
    assert g.fitness("good") > 0 > g.fitness("bad")
    before = {t.id for t in g.population}
    g.evolve()
    assert "good" in {t.id for t in g.population}  # elitism keeps the fittest
    assert g.generation == 1
    children = [t for t in g.population if t.id not in before]
    assert children and all(len(t.parents) == 2 for t in children)


def test_evolution_is_seeded_and_round_trips() -> None:
    a, b = GeneticTriggerSystem(seed=2), GeneticTriggerSystem(seed=2)
    for g in (a, b):
        g.record_outcome([g.population[0].id], 0.2)
        g.evolve()
    assert a.population == b.population
    c = GeneticTriggerSystem.from_dict(a.to_dict())
    assert c.population == a.population and c.fitness(a.population[0].id) == a.fitness(
        a.population[0].id
    )
    c.evolve()
    a.evolve()
    assert c.population == a.population


def test_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="population_size"):
        GeneticTriggerSystem(population_size=2)


def test_environment_is_measured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(home=tmp_path)
    m = store.add_model("m", "t", "f")
    for status in (ExperimentStatus.FAILED, ExperimentStatus.COMPLETED):
        e = store.add_experiment(model_id=m.id, strategy="train")
        store.update_experiment(e.id, status=status)
    env = measure_environment(store, queue_length=5, api_calls_last_minute=30)
    assert set(env) == set(FEATURES)
    assert env["error_rate"] == 0.5 and env["queue_length"] == 0.5
    assert env["api_call_rate"] == 0.5
    assert all(0 <= v <= 1 for v in env.values())


def test_model_complexity_is_the_mean_log_size_of_the_incumbents(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(home=tmp_path)
    for name, params in (("a", 1_000), ("b", 100_000), ("c", None)):
        m = store.add_model(name, "t", "f")
        store.add_version(
            model_id=m.id,
            number=1,
            parent_id=None,
            status=VersionStatus.INCUMBENT,
            strategy="register",
            origin="given",
            params={},
            metrics={} if params is None else {"parameters": params},
            checkpoint_path="x",
            manifest_path="y",
            sha256="0" * 64,
            size_bytes=1,
        )
    store.add_model("no_version", "t", "f")
    env = measure_environment(store)
    assert env["model_complexity"] == pytest.approx((3 + 5) / 2 / 7)
