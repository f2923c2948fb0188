from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import StrategyError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.registry import LoadedModel
from selfimprove.store import Decision, ExperimentStatus, VersionStatus
from selfimprove.strategies import Candidate, Cost, Strategy, StrategyContext
from tests.conftest import wine_task

# Every test on SQLite and on PostgreSQL (see tests/conftest.py), but one of two homes.
pytestmark = pytest.mark.usefixtures("store_url")


def _register_weak(si: SelfImprover, name: str = "wine") -> None:
    task = wine_task()
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    si.register_model(name, task, module, {"width": 16, "depth": 1})


def test_weak_model_improves_through_train_and_decision_carries_test(
    improver: SelfImprover,
) -> None:
    _register_weak(improver)
    before_sha = improver.registry.incumbent("wine").sha256
    (outcome,) = improver.run(1, planned=False)
    assert outcome.decision is Decision.PROMOTE, outcome.reason
    assert outcome.after > outcome.before
    exp = improver.store.get_experiment(outcome.experiment_id)  # type: ignore[arg-type]
    assert exp.status is ExperimentStatus.COMPLETED and exp.decision is Decision.PROMOTE
    st = exp.statistics
    assert st["test_after"] == pytest.approx(outcome.test_after)
    assert 0 <= st["test_after"] <= 1 and st["p_value"] < 0.05
    assert exp.compute["epochs"] >= 1 and exp.durations["total_s"] > 0
    # what it spent, on the outcome too, and a line that reads well
    assert outcome.epochs == exp.compute["epochs"] and outcome.seconds > 0
    line = str(outcome)
    assert line.startswith("wine (cycle 1): train promoted — accuracy ") and "→" in line
    assert f"{outcome.epochs:g} epochs in " in line and "Decision." not in line
    assert (str(Decision.PROMOTE), f"{ExperimentStatus.COMPLETED}") == ("promote", "completed")
    # lineage: v2 came from v1 by train, warm-started
    v2 = improver.registry.incumbent("wine")
    assert (v2.number, v2.strategy, v2.origin) == (2, "train", "warm_start")
    assert improver.store.version_by_id(v2.parent_id).sha256 == before_sha  # type: ignore[arg-type]
    # the replaced incumbent is untouched on disk
    assert improver.registry.verify("wine", 1).sha256 == before_sha


def test_measurements_form_a_time_series(improver: SelfImprover) -> None:
    _register_weak(improver)
    improver.run(2, planned=False)
    cap = improver.store.get_capability("wine/accuracy")
    vals = improver.store.list_measurements(cap.id, split="validation")
    assert len(vals) >= 3  # observed each cycle, plus each promotion
    assert cap.baseline == pytest.approx(vals[0].value)
    assert {m.split for m in improver.store.list_measurements(cap.id)} == {"validation", "test"}


@pytest.mark.sqlite_only  # two homes, so two stores; one SELFIMPROVE_DB would make them one
def test_same_seed_same_decisions(tmp_path: Path, fast_config: SelfImprovementConfig) -> None:
    runs = []
    for i in range(2):
        with SelfImprover(tmp_path / f"h{i}", config=fast_config, seed=5) as si:
            _register_weak(si)
            outcomes = si.run(3, planned=False)
            runs.append([(o.decision, o.before, o.after, o.p_value) for o in outcomes])
    assert runs[0] == runs[1]


class _Boom(Strategy):
    name = "boom"
    family = "training"

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        raise StrategyError("no candidate today")


def test_failing_strategy_is_a_failed_experiment_and_loop_goes_on(
    improver: SelfImprover,
) -> None:
    _register_weak(improver)
    out = improver.loop.improve("wine", cycle=1, strategy=_Boom())
    assert out.status == "failed" and "no candidate today" in out.reason
    exp = improver.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    assert exp.status is ExperimentStatus.FAILED and exp.finished_at is not None
    assert improver.registry.incumbent("wine").number == 1
    assert improver.run(1, planned=False)[0].status == "completed"


def test_diverging_training_is_a_failed_experiment(improver: SelfImprover) -> None:
    _register_weak(improver)
    out = improver.loop.improve(
        "wine", cycle=1, params={"lr": 1e12, "optimizer": "sgd", "clip_norm": None}
    )
    assert out.status == "failed" and "DivergedError" in out.reason
    assert [v.number for v in improver.registry.versions("wine")] == [1]


def test_corrupted_incumbent_is_reported_and_left_alone(improver: SelfImprover) -> None:
    _register_weak(improver, "wine")
    _register_weak(improver, "wine2")
    v = improver.registry.incumbent("wine")
    path = improver.home / v.checkpoint_path  # type: ignore[operator]
    path.write_bytes(path.read_bytes()[:-10])
    outcomes = {o.model: o for o in improver.run(1, planned=False)}
    assert outcomes["wine"].status == "skipped" and "corrupted" in outcomes["wine"].reason
    assert outcomes["wine2"].status == "completed"
    assert [x.number for x in improver.registry.versions("wine")] == [1]
    events = improver.store.list_events(kind="checkpoint_error")
    assert events and "corrupted" in events[0].message


def test_observing_many_models_is_one_commit_and_records_what_observe_does(
    improver: SelfImprover,
) -> None:
    from sqlalchemy import event

    for name in ("wine", "wine2", "wine3"):
        _register_weak(improver, name)
    v = improver.registry.incumbent("wine2")
    path = improver.home / v.checkpoint_path  # type: ignore[operator]
    path.write_bytes(path.read_bytes()[:-10])
    store = improver.store
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    observed, unusable = improver.loop.observe_many(store.list_models())
    assert len(commits) == 1  # every measurement of every model, one transaction
    assert [inc.model.name for inc, _ in observed] == ["wine", "wine3"]
    assert list(unusable) == ["wine2"] and "corrupted" in str(unusable["wine2"])
    _, single = improver.loop.observe("wine")  # the per-model path records the same things
    cap = store.get_capability("wine/accuracy")
    vals = store.list_measurements(cap.id, split="validation")
    assert len(vals) == 2 and vals[0].value == vals[1].value == single.value("accuracy")
    assert vals[0].measured_at <= vals[1].measured_at
    assert vals[0].version_id == vals[1].version_id == improver.registry.incumbent("wine").id
    assert store.list_measurements(store.get_capability("wine2/accuracy").id) == []


def test_model_at_target_is_not_touched(improver: SelfImprover) -> None:
    task = wine_task("wine_easy", target=0.5)
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=50, lr=3e-3, seed=0))
    improver.register_model("wine", task, module, {"width": 16, "depth": 1})
    (out,) = improver.run(1, planned=False)
    assert out.status == "skipped" and "meets its target" in out.reason
    assert improver.store.list_experiments() == []


class _Identity(Strategy):
    """An A/A strategy: the candidate is an exact copy of the incumbent."""

    name = "identity"
    family = "training"

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        return Candidate(
            module=copy.deepcopy(incumbent.module),
            params=dict(incumbent.version.params),
            strategy=self.name,
            origin="copy",
            details={},
            cost=Cost(epochs=0, seconds=0.0),
        )


@pytest.mark.parametrize("cycle", [1, 2, 3])
def test_aa_candidate_through_the_loop_is_rejected_and_kept(
    improver: SelfImprover, cycle: int
) -> None:
    _register_weak(improver)
    out = improver.loop.improve("wine", cycle=cycle, strategy=_Identity())
    assert out.decision is Decision.REJECT
    assert improver.registry.incumbent("wine").number == 1
    assert improver.registry.version("wine", 2).status is VersionStatus.REJECTED
    assert (
        improver.registry.version("wine", 2).sha256 == improver.registry.version("wine", 1).sha256
    )


def test_an_unchanged_incumbent_is_not_read_or_measured_again_until_a_refresh(
    improver: SelfImprover, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("wine", "wine2"):
        _register_weak(improver, name)
    loop, store = improver.loop, improver.store
    loads: list[str] = []
    real = improver.registry.load_record

    def counted(model: Any, version: Any) -> Any:
        loads.append(model.name)
        return real(model, version)

    monkeypatch.setattr(improver.registry, "load_record", counted)
    first, _ = loop.observe_many(store.list_models(), refresh=False)  # nothing seen yet
    assert sorted(loads) == ["wine", "wine2"]
    rows = len(store.list_measurements())
    again, _ = loop.observe_many(store.list_models(), refresh=False)
    assert sorted(loads) == ["wine", "wine2"]  # not read, not evaluated
    assert len(store.list_measurements()) == rows  # nothing recorded twice
    assert [e.value("accuracy") for _, e in again] == [e.value("accuracy") for _, e in first]
    loop.observe_many(store.list_models(), refresh=True)  # a refresh reads every one
    assert sorted(loads) == ["wine", "wine", "wine2", "wine2"]
    assert len(store.list_measurements()) > rows


def test_a_checkpoint_damaged_between_cycles_is_never_used(improver: SelfImprover) -> None:
    _register_weak(improver)
    loop, store = improver.loop, improver.store
    loop.observe_many(store.list_models(), refresh=False)
    v = improver.registry.incumbent("wine")
    path = improver.home / v.checkpoint_path  # type: ignore[operator]
    path.write_bytes(path.read_bytes()[:-10])
    observed, unusable = loop.observe_many(store.list_models(), refresh=False)
    assert not unusable  # the reused observation read nothing...
    out = loop.improve(  # ...but the experiment loads its incumbent, checksum verified
        "wine", cycle=1, strategy="train", only_below_target=False, observation=observed[0][1]
    )
    assert out.status == "skipped" and "corrupted" in out.reason
    assert store.list_experiments() == []  # nothing ran from it, nothing promoted
    assert any(e.kind == "checkpoint_error" for e in store.list_events())
    _, unusable = loop.observe_many(store.list_models(), refresh=True)
    assert "corrupted" in str(unusable["wine"])  # the refresh reports it too


def test_only_the_strongest_peers_are_loaded_as_teachers() -> None:
    from selfimprove.loop.experiment import strongest_peers
    from selfimprove.objectives import Direction, Objective

    accuracy = Objective("accuracy", Direction.MAXIMIZE, ideal=1.0)
    peers = [("m1", 0.5), ("m2", 0.9), ("m3", None), ("m4", 0.7), ("m5", 0.9), ("m6", 0.8)]
    chosen, why = strongest_peers(peers, accuracy, k=4)
    assert chosen == ["m2", "m5", "m6", "m4"]  # best first, ties by name
    assert why == "the 4 of 6 peers best on validation accuracy may teach"
    assert strongest_peers(peers, accuracy, k=10)[0][-1] == "m3"  # unknown last
