"""Alerts by webhook, against a real HTTP server on 127.0.0.1 in a thread: a promotion in a
real run is one POST with the expected JSON; a bad URL is refused in one line; an endpoint that
cannot be reached or fails does not break the run."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.lm_judge import CycleFigures, judge_cycle
from selfimprove.store import ExperimentStatus
from selfimprove.surfaces.alerts import AlertConfig, AlertWatcher, alert_config
from tests.conftest import wine_task


@dataclass
class Hook:
    """A webhook on 127.0.0.1 that records each POST (path, headers, JSON body)."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0  # answer this many POSTs with 503 first


@pytest.fixture
def hook() -> Iterator[Hook]:
    server: http.server.ThreadingHTTPServer

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if rec.fail_first > 0:
                rec.fail_first -= 1
                self.send_response(503)
            else:
                rec.posts.append(
                    {
                        "path": self.path,
                        "type": self.headers["Content-Type"],
                        "json": json.loads(body),
                    }
                )
                self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Hook(f"http://127.0.0.1:{server.server_address[1]}/hooks/selfimprove?token=s3cret")
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield rec
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def untrained_wine(improver: SelfImprover) -> None:
    task = wine_task()
    torch.manual_seed(0)
    improver.register_model("wine", task, task.build(task.default_params()), task.default_params())


def test_a_promotion_in_a_real_run_is_one_post_with_the_expected_json(
    improver: SelfImprover, hook: Hook
) -> None:
    untrained_wine(improver)
    config = AlertConfig(hook.url, poll_s=0.05)
    with AlertWatcher(improver.store, config) as watcher:
        outcome = improver.improve("wine", "train")
    assert outcome.promoted  # an untrained model: training it is a significant gain
    assert len(hook.posts) == 1, hook.posts  # the judge's and the registry's rows: one alert
    (post,) = hook.posts
    assert post["path"] == "/hooks/selfimprove?token=s3cret"
    assert post["type"] == "application/json"
    body = post["json"]
    assert set(body) == {"kind", "model", "message", "time", "figures", "source"}
    assert (body["kind"], body["model"]) == ("promotion", "wine")
    assert body["message"] == f"wine v2: {outcome.reason}"
    assert datetime.fromisoformat(body["time"].removesuffix("Z"))
    exp = improver.store.get_experiment(outcome.experiment_id or -1)
    assert body["figures"] == {
        "experiment": exp.id,
        "strategy": "train",
        "cycle": exp.cycle,
        "objective": "accuracy",
        "before": outcome.before,
        "after": outcome.after,
        "relative_improvement": exp.statistics["relative_improvement"],
        "p_value": outcome.p_value,
        "version": improver.registry.incumbent("wine").number,
    }
    assert body["source"].startswith("event:")
    assert [a.kind for a in watcher.sent] == ["promotion"] and watcher.failed == []

    # A rollback is an alert too; with --alert-on failure only, neither is sent.
    with AlertWatcher(improver.store, AlertConfig(hook.url, kinds=("rollback",))) as w:
        improver.rollback("wine")
    assert [p["json"]["kind"] for p in hook.posts[1:]] == ["rollback"]
    assert hook.posts[1]["json"]["figures"] == {"from": 2, "to": 1}
    assert len(w.sent) == 1
    with AlertWatcher(improver.store, AlertConfig(hook.url, kinds=("failure",))):
        improver.rollback("wine", to=2)
    assert len(hook.posts) == 2


@pytest.mark.parametrize(
    "url, why",
    [
        ("", "it is empty"),
        ("hooks.example.com/x", "must start with http:// or https://"),
        ("ftp://hooks.example.com/x", "must start with http:// or https://"),
        ("http:///x", "it has no host"),
        ("http://host:99999/x", "out of range"),
        ("http://host/a b", "spaces or control characters"),
        ("http://h/" + "x" * 3000, "longer than 2048"),
    ],
)
def test_a_bad_url_is_refused_clearly(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match="bad alert webhook URL") as e:
        AlertConfig(url)
    assert why in str(e.value) and "\n" not in str(e.value)
    assert "https://hooks.example.com/selfimprove" in str(e.value)  # what to give instead


def test_bad_alert_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="alert kinds must be some of"):
        AlertConfig("http://127.0.0.1/x", kinds=("promotion", "explosion"))
    with pytest.raises(ConfigError, match="timeout"):
        AlertConfig("http://127.0.0.1/x", timeout_s=0)
    with pytest.raises(ConfigError, match="retries"):
        AlertConfig("http://127.0.0.1/x", retries=99)
    with pytest.raises(ConfigError, match="needs --alert-url"):
        alert_config(None, ["promotion"])
    assert alert_config(None) is None


def test_the_command_line_refuses_a_bad_url_in_one_line_before_anything_runs(
    tmp_path: Path,
) -> None:
    home = tmp_path / "never"
    proc = subprocess.run(
        [sys.executable, "-m", "selfimprove", "run", "--home", str(home), "--alert-url", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: bad alert webhook URL 'x'")
    assert "Traceback" not in proc.stderr
    assert not home.exists()  # nothing was created


def test_an_unreachable_endpoint_does_not_break_the_run(
    improver: SelfImprover, caplog: pytest.LogCaptureFixture
) -> None:
    untrained_wine(improver)
    url = f"http://127.0.0.1:{closed_port()}/hook?token=s3cret"
    t0 = time.perf_counter()
    with (
        caplog.at_level(logging.WARNING, logger="selfimprove.surfaces.alerts"),
        AlertWatcher(improver.store, AlertConfig(url, retries=1, poll_s=0.05)) as watcher,
    ):
        outcome = improver.improve("wine", "train")
        improver.rollback("wine")
    assert outcome.promoted and improver.registry.incumbent("wine").number == 1
    assert [a.kind for a in watcher.failed] == ["promotion", "rollback"] and not watcher.sent
    assert time.perf_counter() - t0 < 30  # two tries each, refused at once, 0.5 s apart
    dropped = [r.getMessage() for r in caplog.records if "dropped after 2 tries" in r.getMessage()]
    assert len(dropped) == 2
    assert all("s3cret" not in m and "/hook" not in m for m in dropped)  # no token in logs


def test_a_failed_post_is_retried(improver: SelfImprover, hook: Hook) -> None:
    untrained_wine(improver)
    hook.fail_first = 1
    with AlertWatcher(improver.store, AlertConfig(hook.url, retries=2, poll_s=0.05)) as w:
        assert improver.improve("wine", "train").promoted
    assert [p["json"]["kind"] for p in hook.posts] == ["promotion"] and len(w.sent) == 1


def test_plasticity_cycles_alert_on_a_kept_cycle_and_on_degeneration(
    improver: SelfImprover, hook: Hook
) -> None:
    """Plasticity cycles are experiments written finished in one batch (as its ledger writes
    them), with the reason of the real acceptance rule."""
    store = improver.store
    model = store.add_model("tiny:run1", "external:language-model:pydoc", "gpt2")
    watcher = AlertWatcher(store, AlertConfig(hook.url))
    cases = [  # (perplexity after, degeneration): kept; degenerated; too perplexed only
        (10.0, 0.1),
        (10.0, 0.9),
        (99.0, 0.1),
    ]
    for cycle, (ppl, degeneration) in enumerate(cases, start=1):
        verdict = judge_cycle(
            CycleFigures(
                perplexity_start=10.0,
                perplexity_after=ppl,
                degeneration=degeneration,
                tolerance=0.05,
                degeneration_threshold=0.5,
            )
        )
        with store.batch():
            exp = store.add_experiment(
                model_id=model.id,
                strategy="plasticity",
                objective="perplexity",
                cycle=cycle,
                status=ExperimentStatus.RUNNING,
            )
            stats = {"metric": "perplexity", "before": 10.0, "after": ppl}
            store.update_experiment(
                exp.id,
                status=ExperimentStatus.COMPLETED,
                decision=verdict.decision,
                reason=verdict.reason,
                statistics={**stats, "degeneration": degeneration},
            )
    watcher.poll()
    kinds = [(p["json"]["kind"], p["json"]["figures"]["cycle"]) for p in hook.posts]
    assert kinds == [("promotion", 1), ("degeneration", 2)]
    degenerated = hook.posts[1]["json"]
    assert degenerated["model"] == "tiny:run1"
    assert degenerated["figures"]["degeneration"] == 0.9
    assert degenerated["figures"]["degeneration_limit"] == 0.5
    assert "degeneration 0.900 > 0.500" in degenerated["message"]
