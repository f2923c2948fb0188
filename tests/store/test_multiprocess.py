"""Several drivers on one store: four ``selfimprove run`` of two cycles at once on one home
(its SQLite file, or one PostgreSQL database through ``SELFIMPROVE_DB``). Every process
finishes, every version any of them wrote loads with its checksum verified, every experiment is
recorded once and none is left running or stale, no experiment is run twice (a driver claims a
model's experiment; another driver leaves a claimed model alone), no version number is handed
out twice, and no promotion is lost: each promoted candidate replaced the incumbent it was
judged against. The store is new: each process finds no model and trains and registers the
built-ins, skipping those another process registered meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfimprove.registry import Registry
from selfimprove.store import Decision, ExperimentStatus, Store, VersionStatus
from selfimprove.tasks import BUILTIN_TASKS

#: Two cycles on two small built-in models, one epoch a training.
RUN = [sys.executable, "-m", "selfimprove", "run", "--cycles", "2", "--model", "neural_sort"]
RUN += ["--model", "hormone_response", "--epochs", "1", "--json"]
DRIVERS = 4


@pytest.mark.usefixtures("store_url")
def test_four_drivers_at_once_on_one_store(home: Path, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [*RUN, "--home", str(home)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(DRIVERS)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * DRIVERS, [err[-2000:] for _, err in results]
    outcomes = [o for out, _ in results for o in json.loads(out)]
    reported = [o["experiment_id"] for o in outcomes if o["experiment_id"] is not None]
    assert reported and len(reported) == len(set(reported))

    store = Store(home=home)
    experiments = store.list_experiments()
    assert sorted(e.id for e in experiments) == sorted(reported)  # each once, no orphan
    assert {e.status for e in experiments} <= {ExperimentStatus.COMPLETED, ExperimentStatus.FAILED}
    keys = [(e.model_id, e.cycle, e.strategy, e.incumbent_version_id) for e in experiments]
    assert len(keys) == len(set(keys))  # no experiment ran twice
    left = [
        o["reason"] for o in outcomes if o["experiment_id"] is None and o["status"] == "skipped"
    ]
    reasons = ("left to it", "already run", "meets its target", "did not", "refused", "no ")
    assert all(any(k in r for k in reasons) for r in left), left
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
        promoted = [
            e for e in experiments if e.model_id == model.id and e.decision is Decision.PROMOTE
        ]
        by_id = {v.id: v for v in versions}
        for e in promoted:  # no lost promotion: each replaced what it was judged against
            v = by_id[e.candidate_version_id or 0]
            assert v.status is not VersionStatus.REJECTED and v.parent_id == e.incumbent_version_id
        chain = sorted(by_id[e.candidate_version_id or 0].number for e in promoted)
        incumbent = next(v for v in versions if v.status is VersionStatus.INCUMBENT)
        assert not chain or incumbent.number == chain[-1]  # the last promotion holds
    store.close()
