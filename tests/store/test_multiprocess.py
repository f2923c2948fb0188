"""Several processes on one store: three ``selfimprove run`` at once on one home (its SQLite
file, or one PostgreSQL database through ``SELFIMPROVE_DB``). Every process finishes, every
version any of them wrote loads with its checksum verified, every experiment is recorded once
and none is left running or stale. The store is new: each process finds no model and trains
and registers the built-ins, skipping those another process registered meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfimprove.registry import Registry
from selfimprove.store import ExperimentStatus, Store, VersionStatus
from selfimprove.tasks import BUILTIN_TASKS

#: One cycle on one small built-in model, one epoch a training (about 15 s for the three).
RUN = [sys.executable, "-m", "selfimprove", "run", "--cycles", "1", "--model", "neural_sort"]
RUN += ["--epochs", "1", "--json"]


@pytest.mark.usefixtures("store_url")
def test_three_runs_at_once_on_one_store(home: Path, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [*RUN, "--home", str(home)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in results]
    outcomes = [o for out, _ in results for o in json.loads(out)]
    reported = [o["experiment_id"] for o in outcomes if o["experiment_id"] is not None]
    assert reported and len(reported) == len(set(reported))

    store = Store(home=home)
    experiments = store.list_experiments()
    assert sorted(e.id for e in experiments) == sorted(reported)  # each once, no orphan
    assert {e.status for e in experiments} <= {ExperimentStatus.COMPLETED, ExperimentStatus.FAILED}
    registry = Registry(store, home)
    models = store.list_models()
    assert sorted(m.name for m in models) == sorted(BUILTIN_TASKS)  # each registered once
    for model in models:
        versions = registry.versions(model.name)
        numbers = [v.number for v in versions]
        assert len(numbers) == len(set(numbers)), (model.name, numbers)
        assert [v.status for v in versions].count(VersionStatus.INCUMBENT) == 1, model.name
        for v in versions:
            if v.status.has_weights():
                registry.load(model.name, v.number)  # CheckpointError if any byte is off
    store.close()
