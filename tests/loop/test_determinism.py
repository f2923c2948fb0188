"""Same seed, same decisions — also on a loaded machine.

The planned loop's choices (strategies, judge decisions, the candidates' bytes) must not follow
the clock: the bandit rewards gain per epoch spent, a quality search's cost is counted, the
judge guards latency on counted cost when latency is not the target, and the local executor
runs seeded trainings one at a time. The second run here shares the machine with another
``selfimprove run`` and a process spinning on the CPU.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.meta.gain import reward_cost
from tests.conftest import wine_task

CONFIG = SelfImprovementConfig(train_epochs=10, train_seconds=600.0)


@contextmanager
def _busy_machine(home: Path) -> Iterator[None]:
    """Another ``selfimprove run`` (on its own home) and a process spinning on the CPU, for as
    long as the block runs; the block starts once the other run has opened its store."""
    run = [sys.executable, "-m", "selfimprove", "run", "--cycles", "1000", "--home", str(home)]
    load = [
        subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-c", "while True: pass"]),
    ]
    try:
        deadline = time.monotonic() + 120
        while not (home / "selfimprove.db").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert load[0].poll() is None, "the loading selfimprove run ended early"
        yield
    finally:
        for p in load:
            p.kill()
            p.wait()


def _planned_run(home: Path) -> list[tuple[object, ...]]:
    task = wine_task()
    torch.manual_seed(0)
    module = task.build({"width": 4, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    with SelfImprover(home, config=CONFIG, seed=11) as si:
        si.register_model("wine", task, module, {"width": 4, "depth": 1})
        outcomes = si.run(7, models=["wine"])
        _assert_rewards_are_gain_per_epochs(si)
        versions = {v.id: v.sha256 for v in si.registry.versions("wine")}
        return [
            (
                o.cycle,
                o.strategy,
                o.status,
                o.decision,
                versions.get(si.store.get_experiment(o.experiment_id).candidate_version_id or -1)
                if o.experiment_id is not None
                else None,
            )
            for o in outcomes
        ]


def _assert_rewards_are_gain_per_epochs(si: SelfImprover) -> None:
    """The bandit learnt gain / reward_cost(epochs spent) from each experiment, never per
    second (seconds follow the machine's load)."""
    rewards: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for row in si.cycle.learner.history:
        model = si.store.get_model(row["model"])
        done = [e for e in si.store.list_experiments() if e.cycle == row["cycle"]]
        (exp,) = [e for e in done if e.model_id == model.id and e.strategy == row["strategy"]]
        cost = reward_cost(float(exp.compute["epochs"]))
        rewards[(row["kind"], row["strategy"])].append(row["gain"] / cost)
    assert rewards
    family = si.store.get_model("wine").family
    for (kind, strategy), seen in rewards.items():
        observed = si.cycle.bandit.estimates((kind, family))[strategy]["observed_mean"]
        assert observed == pytest.approx(sum(seen) / len(seen))


@pytest.mark.timeout(300)
def test_same_seed_same_decisions_beside_busy_processes(tmp_path: Path) -> None:
    quiet = _planned_run(tmp_path / "quiet")
    with _busy_machine(tmp_path / "other"):
        loaded = _planned_run(tmp_path / "loaded")
    assert quiet == loaded
    assert len({row[1] for row in quiet}) > 1  # the planner chose, not one fixed strategy
