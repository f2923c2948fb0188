"""Claiming an experiment: one driver at a time per model, and never the same experiment twice.

The claim of another *live* process is made real with a child process that claims and then
waits (its pid alive, its heartbeat fresh); its death ends the claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from selfimprove.store import ExperimentRecord, ExperimentStatus, Store, utcnow
from selfimprove.store._experiments import claim_refusal
from selfimprove.store._liveness import Liveness

pytestmark = pytest.mark.usefixtures("store_url")

SPEC = {"strategy": "train", "cycle": 4, "incumbent_version_id": None, "params": {"lr": 0.1}}

HOLDER = (
    "import sys\n"
    "from selfimprove.store import Store\n"
    "s = Store(home=sys.argv[1])\n"
    "e, why = s.claim_experiment(model_id=1, strategy='tune', cycle=3)\n"
    "print(e.id, flush=True)\n"
    "sys.stdin.read()  # holds the claim until told to go\n"
)


def test_another_live_drivers_claim_stands_until_it_dies(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        theirs = int(holder.stdout.readline())
        exp, why = store.claim_experiment(model_id=m.id, **SPEC)
        assert exp is None
        assert why.startswith(f"experiment {theirs} (tune) is improving this model in ")
        assert why.endswith("; left to it")
        assert [e.id for e in store.list_experiments()] == [theirs]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    exp, why = store.claim_experiment(model_id=m.id, **SPEC)  # its owner is gone: a lease ended
    assert exp is not None and why == "" and exp.status is ExperimentStatus.RUNNING
    store.close()


def test_the_same_experiment_is_not_run_twice(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    first, _ = store.claim_experiment(model_id=m.id, **SPEC)
    assert first is not None
    again, why = store.claim_experiment(model_id=m.id, **SPEC)  # this process, still running
    assert again is None and why.startswith(f"already running as experiment {first.id}")
    other, _ = store.claim_experiment(model_id=m.id, **{**SPEC, "strategy": "grow"})
    assert other is not None  # this process's own claims do not block its other experiments
    store.update_experiment(first.id, status=ExperimentStatus.COMPLETED)
    again, why = store.claim_experiment(model_id=m.id, **SPEC)
    assert again is None and why.startswith(f"already run as experiment {first.id} (cycle 4")
    store.update_experiment(other.id, status=ExperimentStatus.FAILED)
    retry, _ = store.claim_experiment(model_id=m.id, **{**SPEC, "strategy": "grow"})
    assert retry is not None  # a failed experiment may be run again
    later, _ = store.claim_experiment(model_id=m.id, **{**SPEC, "cycle": 5})
    assert later is not None  # another cycle is another seed: another experiment
    other_lr, _ = store.claim_experiment(model_id=m.id, **{**SPEC, "params": {"lr": 0.2}})
    assert other_lr is not None  # other settings: another experiment
    store.close()


def _record(id_: int, status: ExperimentStatus, owner: str, **kw: object) -> ExperimentRecord:
    base: dict[str, object] = {
        "id": id_,
        "model_id": 1,
        "capability_id": None,
        "strategy": "train",
        "objective": None,
        "params": {},
        "hypothesis": "",
        "cycle": 4,
        "seed": None,
        "status": status,
        "decision": None,
        "reason": "",
        "statistics": {},
        "incumbent_version_id": None,
        "candidate_version_id": None,
        "compute": {},
        "durations": {},
        "created_at": utcnow(),
        "started_at": None,
        "finished_at": None,
        "owner": owner,
        "heartbeat_at": None,
        "weakness_id": None,
        "expected_improvement": None,
    }
    return ExperimentRecord(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.sqlite_only
def test_claim_refusal_is_a_pure_rule() -> None:
    run = ExperimentStatus.RUNNING
    dead, live = Liveness(False, "its process 9 has ended"), Liveness(True, "its process 8 runs")
    stale = _record(1, run, "h:9:1", strategy="tune")
    assert claim_refusal(SPEC, [stale], {1: dead}, "h:7:1") is None  # a dead owner claims nothing
    theirs = _record(2, run, "h:8:1", strategy="tune")
    assert "is improving this model in h:8:1" in str(
        claim_refusal(SPEC, [theirs], {2: live}, "h:7:1")
    )
    assert claim_refusal(SPEC, [theirs], {2: live}, "h:8:1") is None  # its own other experiment
    done = _record(3, ExperimentStatus.COMPLETED, "h:8:1", params={"lr": 0.1})
    assert "already run as experiment 3" in str(claim_refusal(SPEC, [done], {}, "h:7:1"))
    assert claim_refusal({**SPEC, "params": {}}, [done], {}, "h:7:1") is None
    failed = _record(4, ExperimentStatus.FAILED, "h:8:1", params={"lr": 0.1})
    assert claim_refusal(SPEC, [failed], {}, "h:7:1") is None
