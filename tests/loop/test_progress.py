"""Progress from the Python API: a callback as a cycle plans and judges, and INFO logging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.loop.system import SelfImprovingNeuralSystem
from selfimprove.measure.training import TrainConfig, train_
from tests.conftest import wine_task

CONFIG = SelfImprovementConfig(train_epochs=4, train_seconds=20.0, auto_start=False)


def _register(si: SelfImprover) -> None:
    task = wine_task()
    for name, seed in (("wine_a", 0), ("wine_b", 1)):
        torch.manual_seed(seed)
        module = task.build({"width": 8, "depth": 1})
        train_(module, task, TrainConfig(epochs=1, seed=seed))
        si.register_model(name, task, module, {"width": 8, "depth": 1})


def test_run_reports_the_plan_then_each_experiment_then_the_cycle(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    with SelfImprover(home, config=CONFIG, seed=0) as si:
        _register(si)
        with caplog.at_level(logging.INFO, logger="selfimprove"):
            outcomes = si.run(2, progress=lambda e, d: events.append((e, d)))
        assert si.cycle.progress is None  # the callback was for this run only
    kinds = [e for e, _ in events]
    assert kinds[0] == "planned" and kinds.count("cycle") == 2 and kinds[-1] == "cycle"
    for cycle in (1, 2):
        (plan,) = [d for e, d in events if e == "planned" and d["cycle"] == cycle]
        judged = [d["outcome"] for e, d in events if e == "experiment" and d["cycle"] == cycle]
        assert [t["model"] for t in plan["tasks"]] == [o.model for o in judged]
        assert [t["strategy"] for t in plan["tasks"]] == [o.strategy for o in judged]
        assert plan["budget"] == {"epochs": 4, "seconds": 20.0}
        (done,) = [d for e, d in events if e == "cycle" and d["cycle"] == cycle]
        assert set(map(id, judged)) <= set(map(id, done["outcomes"]))
        # The plan comes before its experiments, and the experiments before the cycle's end.
        at = [i for i, (e, d) in enumerate(events) if d["cycle"] == cycle]
        assert kinds[at[0]] == "planned" and kinds[at[-1]] == "cycle"
    assert len(outcomes) == sum(len(d["outcomes"]) for e, d in events if e == "cycle")
    assert any("cycle 1:" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


def test_a_failing_callback_is_logged_and_the_cycle_goes_on(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: str, data: dict[str, Any]) -> None:
        raise RuntimeError("display gone")

    with SelfImprovingNeuralSystem(home=home, config=CONFIG, progress=broken) as system:
        _register(system.improver)
        with caplog.at_level(logging.WARNING, logger="selfimprove"):
            metrics = system.run_cycle_sync()
        assert metrics is not None
        experiments = system.store.list_experiments()
        assert experiments and all(e.status.value != "running" for e in experiments)
    assert any("progress callback failed" in r.getMessage() for r in caplog.records)
