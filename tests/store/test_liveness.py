"""Owners, heartbeats and the stale rule; version numbers reserved across threads and processes;
checkpoint files written once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from selfimprove.checkpoints import atomic_write
from selfimprove.store import ExperimentStatus, Store, VersionStatus, liveness, utcnow
from selfimprove.store._liveness import process_owner

# Every test that opens a store runs on SQLite and on PostgreSQL (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("store_url")

NOW = utcnow()


def _alive(pid: int, start_ms: int) -> bool:
    return pid == 10 and start_ms == 5


@pytest.mark.sqlite_only  # no store
@pytest.mark.parametrize(
    ("owner", "beat_age_s", "alive", "why"),
    [
        (None, 0, False, "no owner recorded"),
        ("here:10:5", 999, True, "process 10 runs"),  # same host: the process decides
        ("here:11:5", 0, False, "process 11 on here has ended"),
        ("here:10:6", 0, False, "has ended"),  # the pid was reused by another process
        ("there:10:5", 30, True, "heartbeat from there 30 s ago"),
        ("there:10:5", 121, False, "no heartbeat from there for 121 s"),
        ("there:10:5", None, False, "no heartbeat from there"),
        ("a:b:c", 0, False, "unreadable owner"),
        ("host:with:colons:10:5", 30, True, "heartbeat from host:with:colons"),
    ],
)
def test_the_stale_rule(owner: str | None, beat_age_s: float | None, alive: bool, why: str) -> None:
    beat = None if beat_age_s is None else NOW - timedelta(seconds=beat_age_s)
    verdict = liveness(owner, beat, NOW, host="here", expiry_s=120, alive=_alive)
    assert verdict.alive is alive
    assert why in verdict.reason


def test_a_running_experiment_has_this_process_as_owner_and_a_beating_heart(home: Path) -> None:
    store = Store(home=home)
    store.heartbeat_interval_s = 0.05
    m = store.add_model("a", "t", "f")
    exp = store.add_experiment(model_id=m.id, strategy="train", status=ExperimentStatus.RUNNING)
    assert exp.owner == process_owner() and exp.heartbeat_at is not None
    assert store.experiment_liveness(exp).alive
    deadline = time.monotonic() + 10
    while store.get_experiment(exp.id).heartbeat_at == exp.heartbeat_at:
        assert time.monotonic() < deadline, "the heartbeat never moved"
        time.sleep(0.05)
    store.update_experiment(exp.id, status=ExperimentStatus.COMPLETED)
    finished = store.get_experiment(exp.id).heartbeat_at
    time.sleep(0.2)
    assert store.get_experiment(exp.id).heartbeat_at == finished  # only running ones beat
    # the thread idles between experiments and beats again for the next one
    beating = [t for t in threading.enumerate() if t.name == "selfimprove-heartbeat"]
    assert len(beating) == 1
    second = store.add_experiment(model_id=m.id, strategy="train", status=ExperimentStatus.RUNNING)
    while store.get_experiment(second.id).heartbeat_at == second.heartbeat_at:
        assert time.monotonic() < deadline + 10, "the heartbeat never moved again"
        time.sleep(0.05)
    assert [t for t in threading.enumerate() if t.name == "selfimprove-heartbeat"] == beating
    store.close()
    assert not any(t.name == "selfimprove-heartbeat" for t in threading.enumerate())


def test_a_planned_experiment_started_later_gets_its_owner(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    (planned,) = store.add_experiments([{"model_id": m.id, "strategy": "train"}])
    assert planned.owner is None
    started = store.update_experiment(planned.id, status=ExperimentStatus.RUNNING)
    assert started.owner == process_owner()
    assert store.mark_stale_experiments() == []
    store.close()


def test_version_numbers_are_handed_out_once_across_threads(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    got: list[int] = []
    lock = threading.Lock()

    def reserve() -> None:
        for _ in range(20):
            n = store.reserve_version_number(m.id)
            with lock:
                got.append(n)

    threads = [threading.Thread(target=reserve) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 121))
    store.close()


_RESERVE = """
import sys
from selfimprove.store import Store
s = Store(home=sys.argv[1])
print(" ".join(str(s.reserve_version_number(1)) for _ in range(25)))
s.close()
"""


def test_version_numbers_are_handed_out_once_across_processes(home: Path) -> None:
    Store(home=home).add_model("a", "t", "f")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RESERVE, str(home)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    numbers = [int(n) for p in procs for n in p.communicate(timeout=120)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(numbers) == list(range(1, 101))


def test_the_counter_starts_past_versions_recorded_without_it(home: Path) -> None:
    store = Store(home=home)
    m = store.add_model("a", "t", "f")
    store.add_version(
        model_id=m.id, number=7, parent_id=None, status=VersionStatus.INCUMBENT, strategy="initial",
        origin="user", params={}, metrics={}, checkpoint_path="x", manifest_path="y",
        sha256="0" * 64, size_bytes=1,
    )  # fmt: skip
    assert store.reserve_version_number(m.id) == 8
    store.close()


@pytest.mark.sqlite_only  # no store
def test_an_exclusive_write_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "v1" / "model.safetensors"
    atomic_write(path, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp left
