"""Prometheus metrics: ``/metrics`` scraped over HTTP on 127.0.0.1 while real experiments run,
parsed with prometheus_client's own parser, and every figure checked against the store."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import torch

from selfimprove.loop.health import health_report
from selfimprove.loop.improver import SelfImprover
from selfimprove.store import Decision, ExperimentStatus, Store
from selfimprove.surfaces.report.server import make_server
from tests.conftest import wine_task

parser = pytest.importorskip("prometheus_client.parser")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of one scrape, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    out: Samples = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def by_name(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_metrics_scraped_while_a_cycle_runs_say_what_the_store_says(
    improver: SelfImprover, home: Path
) -> None:
    task = wine_task()
    torch.manual_seed(0)
    improver.register_model("wine", task, task.build(task.default_params()), task.default_params())
    server = make_server(home, port=0, metrics=True)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        assert by_name(scrape(port), "selfimprove_promotions_total") == {(): 0.0}

        # A judged experiment (an untrained model: train promotes it) and a planned cycle,
        # scraped over and over while they run.
        done = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                assert improver.improve("wine", "train").promoted
                improver.run(1)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, daemon=True).start()
        promotions_seen = []
        while not done.is_set():
            samples = scrape(port)
            promotions_seen.append(samples["selfimprove_promotions_total", ()])
            time.sleep(0.05)
        assert not errors, errors
        assert len(promotions_seen) >= 2  # scraped while the work ran
        assert promotions_seen == sorted(promotions_seen)  # a counter never goes down
        samples = scrape(port)
    finally:
        server.shutdown()
        server.server_close()

    store = improver.store
    assert samples["selfimprove_models", ()] == 1
    assert samples["selfimprove_cycles_total", ()] == store.max_cycle() == 2
    promoted = store.count_experiments(decision=Decision.PROMOTE.value)
    assert samples["selfimprove_promotions_total", ()] == promoted >= 1
    finished = by_name(samples, "selfimprove_experiments_total")
    assert sum(finished.values()) == store.count_experiments() == 2
    for e in store.list_experiments():
        assert e.status is ExperimentStatus.COMPLETED and e.decision is not None
        key = (("outcome", e.decision.value), ("strategy", e.strategy))
        assert finished[key] >= 1
    assert by_name(samples, "selfimprove_experiments_open") == {}

    inc = improver.registry.incumbent("wine")
    (acc_cap,) = [c for c in store.list_capabilities() if c.objective == "accuracy"]
    (lat_cap,) = [c for c in store.list_capabilities() if c.objective == "latency_ms"]
    latest = store.latest_measurements(capability_ids=[acc_cap.id, lat_cap.id])
    assert latest[acc_cap.id].version_id == inc.id
    labels = (("direction", "maximize"), ("model", "wine"), ("objective", "accuracy"))
    assert samples["selfimprove_incumbent_metric", labels] == latest[acc_cap.id].value
    assert samples["selfimprove_incumbent_latency_seconds", (("model", "wine"),)] == (
        pytest.approx(latest[lat_cap.id].value / 1000)
    )
    levels = (store.load_state("hormones") or {})["levels"]
    hormones = by_name(samples, "selfimprove_hormone_level")
    assert {dict(k)["hormone"]: v for k, v in hormones.items()} == levels
    health = health_report(store)
    assert samples["selfimprove_health_score", ()] == pytest.approx(health["overall_health"])
    assert samples["selfimprove_system_stability", ()] == health["system_stability"]
    assert samples["selfimprove_last_cycle_timestamp_seconds", ()] > 0


def test_a_running_experiment_whose_process_ended_counts_as_stale(home: Path) -> None:
    from selfimprove.surfaces.report.metrics import read_snapshot

    store = Store(home=home)
    try:
        running = ExperimentStatus.RUNNING
        mine = store.add_experiment(model_id=None, strategy="train", status=running)
        gone = store.add_experiment(model_id=None, strategy="tune", status=running)
        # Its owner: a process of this host that no longer runs (pid 2**22 + 1 is above
        # Linux's pid_max default and never a live process here).
        store.update_experiment(gone.id, owner=f"{socket.gethostname()}:{2**22 + 1}:1")
        snap = read_snapshot(store)
        store.update_experiment(mine.id, status=ExperimentStatus.FAILED)
    finally:
        store.close()
    assert snap.open == {("train", "running"): 1}
    assert snap.finished == {("tune", "stale"): 1}


def test_metrics_are_served_only_when_asked_for(improver: SelfImprover, home: Path) -> None:
    server = make_server(home, port=0)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_the_docs_and_the_grafana_dashboard_use_the_names_served() -> None:
    """Every name in the README's table and in docs/grafana-dashboard.json is one a scrape
    serves, and the README lists every one."""
    from selfimprove.surfaces.report.metrics import LedgerSnapshot, metric_families

    snap = LedgerSnapshot(models=1, cycles=1, last_cycle_at=datetime(2026, 1, 1))
    served = {  # what a scrape's samples are called (a counter's end in _total)
        f.name + ("_total" if f.type == "counter" else "")
        for f in metric_families(snap, scrape_seconds=0.01)
    }
    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    in_dashboard = {n for e in exprs for n in re.findall(r"selfimprove_\w+", e)}
    readme = (root / "README.md").read_text()
    in_readme = set(re.findall(r"^\| `(selfimprove_\w+)`", readme, flags=re.MULTILINE))
    assert in_dashboard and in_dashboard <= served, in_dashboard - served
    assert in_readme == served, in_readme ^ served
