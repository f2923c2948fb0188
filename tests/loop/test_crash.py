"""A real child process, killed with SIGKILL at the riskiest points of a promotion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.store import ExperimentStatus, VersionStatus
from selfimprove.tasks import resolve_task

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
si = SelfImprover(sys.argv[1], config=SelfImprovementConfig(train_epochs=20), seed=0)
si.run(1, planned=False)
print("finished without being killed")
"""


def _setup(home: Path) -> str:
    task = resolve_task("tests._tasks:wine")
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    with SelfImprover(home) as si:
        return si.register_model(
            "wine", "tests._tasks:wine", module, {"width": 16, "depth": 1}
        ).sha256


def _run_child(home: Path, point: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SELFIMPROVE_CRASH_AT": point, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(home)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("point", ["after_checkpoint_write", "before_promote"])
def test_kill_mid_promotion_leaves_old_incumbent_loadable(home: Path, point: str) -> None:
    sha = _setup(home)
    proc = _run_child(home, point)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "finished" not in proc.stdout

    with SelfImprover(home) as si:
        loaded = si.load("wine")  # checksum verified
        assert loaded.version.number == 1 and loaded.version.sha256 == sha
        versions = si.registry.versions("wine")
        assert [v.status for v in versions].count(VersionStatus.INCUMBENT) == 1
        if point == "after_checkpoint_write":
            assert [v.number for v in versions] == [1]  # files written, never recorded
        else:
            assert versions[-1].status is VersionStatus.CANDIDATE
        (running,) = si.store.list_experiments()
        assert running.status is ExperimentStatus.RUNNING

        # The next start marks the cut-short experiment stale and carries on.
        outcome = si.run(1, planned=False)[0]
        assert si.store.get_experiment(running.id).status is ExperimentStatus.STALE
        assert outcome.status == "completed"
        si.load("wine")
