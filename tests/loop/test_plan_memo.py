"""The plan at scale: remembered weaknesses and shared factors give exactly the plan built from
scratch, ``limit`` gives its first tasks, and a changed observation is planned afresh."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import torch

from selfimprove.brain.planning import Observation
from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.system import SelfImprovingNeuralSystem
from selfimprove.objectives import Direction, Objective

#: A version's fields a copy of it keeps.
COPIED = "model_id params metrics checkpoint_path manifest_path sha256 size_bytes strategy origin"
ACC = Objective("accuracy", Direction.MAXIMIZE, target=0.97, ideal=1.0)


def _system(home: Path) -> SelfImprovingNeuralSystem:
    config = SelfImprovementConfig(auto_start=False, train_epochs=2)
    return SelfImprovingNeuralSystem(home=home, config=config, seed=3)


@contextlib.contextmanager
def _systems(*homes: Path) -> Iterator[list[SelfImprovingNeuralSystem]]:
    """One system per home (the same home twice: two processes' objects on one ledger),
    closed afterwards."""
    with contextlib.ExitStack() as stack:
        systems = [_system(h) for h in homes]
        for s in systems:
            stack.callback(s.close)
        yield systems


def _observations(n: int) -> dict[str, Observation]:
    """``n`` models, half over three shared tasks, spread over the planner's rules: training
    (< 0.75), architecture ([0.75, 0.85)), short of target, at target, slow, weaker than a
    peer."""
    out = {}
    for i in range(n):
        value = 0.55 + 0.45 * ((i * 37) % n) / n
        latency = 250.0 if i % 7 == 0 else 1.0
        name = f"m{i:03d}"
        task = f"task{i % 3}" if i % 2 else f"own{i}"  # half have no stronger peer
        out[name] = Observation(name, task, "fam", ACC, value, latency, 1)
    return out


def _plans(s: SelfImprovingNeuralSystem, obs: dict[str, Observation], fresh: bool) -> list:
    plans = []
    for _ in range(3):
        if fresh:
            s.cycle.planner._served_memo.clear()
        plans.append([t.to_dict() for t in s.plan(obs, {})])
    return plans


def test_a_remembered_plan_is_the_plan_built_from_scratch(tmp_path: Path) -> None:
    obs = _observations(60)
    with _systems(tmp_path / "a", tmp_path / "b") as (a, b):
        remembered, fresh = _plans(a, obs, fresh=False), _plans(b, obs, fresh=True)
        assert remembered == fresh
        assert len(remembered[0]) > 40  # most models have a weakness a strategy serves
        kinds = {t["kind"] for t in remembered[0]}
        assert {"training", "architecture", "optimisation", "distillation"} <= kinds
        # the draws differ between plans (Thompson sampling), the memo does not freeze them
        assert any(p != remembered[0] for p in remembered[1:])


def test_limit_gives_the_first_tasks_of_the_whole_plan(tmp_path: Path) -> None:
    obs = _observations(40)
    with _systems(tmp_path / "a", tmp_path / "b") as (a, b):
        for k in (1, 3, 100):
            whole = b.plan(obs, {})
            assert a.plan(obs, {}, limit=k) == whole[:k]


def test_a_changed_observation_is_planned_afresh(tmp_path: Path) -> None:
    obs = _observations(12)
    with _systems(tmp_path) as (s,):
        before = {t.model_id: t for t in s.plan(obs, {})}
        name = next(
            n
            for n, t in before.items()
            if t.kind == "training" and obs[n].latency_ms < 200 and obs[n].task.startswith("own")
        )
        obs[name] = dataclasses.replace(obs[name], value=0.8, version=2)  # now [0.75, 0.85)
        after = {t.model_id: t for t in s.plan(obs, {})}
        assert after[name].kind == "architecture" and "0.800" in after[name].reason
        obs[name] = dataclasses.replace(obs[name], value=0.999, version=3)  # the task's best
        after = {t.model_id: t for t in s.plan(obs, {})}
        assert name not in after or after[name].kind != "architecture"


def test_a_cycle_sees_models_and_incumbents_another_process_wrote(tmp_path: Path) -> None:
    from selfimprove.store import VersionStatus
    from tests.conftest import wine_task

    task = wine_task()
    torch.manual_seed(0)
    module = task.build({"width": 8, "depth": 1})
    with _systems(tmp_path, tmp_path) as (a, b):  # two processes' objects on one ledger
        a.improver.register_model("one", task, module, {"width": 8, "depth": 1})
        assert set(a.cycle.observe()[0]) == {"one"}
        assert [h[1] for h in a.store.model_heads()] == ["one"]
        b.improver.register_model("two", task, module, {"width": 8, "depth": 1})
        obs, _ = a.cycle.observe()
        assert set(obs) == {"one", "two"} and obs["one"].version == 1
        # the other process moves one's incumbent to a new version
        model = b.store.get_model("one")
        v1 = b.store.get_version(model, 1)
        v2 = b.store.add_version(
            **{k: getattr(v1, k) for k in COPIED.split()},
            number=b.store.reserve_version_number(model.id),
            parent_id=v1.id,
            status=VersionStatus.INCUMBENT,
        )
        obs, _ = a.cycle.observe()
        assert obs["one"].version == v2.number == 2 and obs["two"].version == 1
        assert a.store.model_heads()[0] == (model.id, "one", v2.id)


def test_a_new_best_of_a_task_is_the_teacher_of_its_weaker_models(tmp_path: Path) -> None:
    obs = _observations(30)
    first = dict(obs)
    with _systems(tmp_path, tmp_path / "fresh") as (s, fresh):
        before = [t for t in s.plan(obs, {}) if t.kind == "distillation"]
        assert before
        task = obs[before[0].model_id].task
        obs["star"] = Observation("star", task, "fam", ACC, 0.9999, 1.0, 1)
        after = {t.model_id: t for t in s.plan(obs, {}) if t.kind == "distillation"}
        taught = [t for t in after.values() if obs[t.model_id].task == task]
        assert taught and all(t.reason.startswith("star is stronger") for t in taught)
        fresh.plan(first, {})  # the same plans before: the same draws
        fresh.plan(obs, {})
        assert [t.to_dict() for t in fresh.plan(obs, {})] == [t.to_dict() for t in s.plan(obs, {})]
