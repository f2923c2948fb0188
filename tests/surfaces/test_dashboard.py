"""The dashboard page: content from the store, and a real headless chromium rendering it."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.loop.system import SelfImprovingNeuralSystem
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.store import Decision, ExperimentStatus, utcnow
from selfimprove.surfaces.report.dashboard import (
    _tick_step,
    hormone_figure,
    render_dashboard,
    trajectory_figures,
)
from selfimprove.surfaces.report.server import make_server
from tests.conftest import wine_task
from tests.surfaces.browser import chromium, png_colour_count, serve_and_render
from tests.surfaces.conftest import Constructed


@pytest.fixture(scope="module")
def busy_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with two system cycles, a promotion and a rollback."""
    home = tmp_path_factory.mktemp("dash")
    cfg = SelfImprovementConfig(train_epochs=10, train_seconds=20.0, auto_start=False)
    with SelfImprovingNeuralSystem(home=home, config=cfg, seed=0) as s:
        task = wine_task()
        torch.manual_seed(0)
        m = task.build({"width": 16, "depth": 1})
        train_(m, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
        s.improver.register_model("wine", task, m, {"width": 16, "depth": 1})
        asyncio.run(s.add_custom_improvement_task("wine", "train"))
        s.run_cycle_sync()
        s.run_cycle_sync()
        if s.improver.registry.incumbent("wine").number > 1:
            s.improver.rollback("wine")
    return home


def test_page_is_self_contained_and_has_every_section(busy_home: Path) -> None:
    with SelfImprover(busy_home) as si:
        page = render_dashboard(si)
    assert page.startswith("<!DOCTYPE html>")
    head, _, rest = page.partition("</script></head>")  # plotly.js is inlined in the head
    assert "<script src" not in head and "<link rel=stylesheet" not in head
    assert "http://" not in rest and "https://" not in rest  # the body references nothing
    for heading in (
        "Health",
        "Metric trajectories",
        "Hormones",
        "Genetic triggers",
        "Strategy effectiveness",
        "Experiments",
        "Engine",
    ):
        assert f"<h2>{heading}" in page
    assert "wine \\u2014 accuracy" in rest and "accuracy (validation)" in rest


def test_page_reads_the_engine_over_the_improvers_own_store(
    busy_home: Path, constructed: Constructed
) -> None:
    with SelfImprover(busy_home) as si:
        pool = si.store.engine.pool  # closing a store disposes its pool: a new pool object
        constructed.stores.clear()
        page = render_dashboard(si)
        assert si.store.engine.pool is pool  # the engine left the store it was given open
    assert "Self-assessment: grade" in page
    # the neural loop's two cycles are counted in the grade, not "0/0"
    assert "of the neural system's promoted" in page and "0.6 × 0/0" not in page
    assert len(constructed.engines) == 1 and constructed.engines[0].store is si.store
    assert constructed.stores == []  # no second store, so no second connection pool


@pytest.mark.skipif(
    chromium() is None,
    reason="Debian chromium is not installed "
    "(make test installs it where it can: root and apt-get)",
)
def test_dashboard_renders_in_headless_chromium(busy_home: Path, tmp_path: Path) -> None:
    with SelfImprover(busy_home) as si:
        page = render_dashboard(si).encode()
    run = serve_and_render(lambda: page, tmp_path)
    page_requests = run.page_requests()
    assert page_requests and all(r.endswith("/") and "127.0.0.1" in r for r in page_requests), (
        page_requests  # the page itself and nothing else: no network
    )
    errors = [c for c in run.console if "error" in c.lower() or "uncaught" in c.lower()]
    assert errors == []
    assert run.dom.count('class="main-svg"') >= 4  # plotly drew the charts
    assert run.screenshot is not None and png_colour_count(run.screenshot) > 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_live_server_serves_the_page_read_only(busy_home: Path) -> None:
    port = _free_port()
    server = make_server(busy_home, port=port)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read()
        assert b"selfimprove dashboard" in body
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"x", method="POST"),
                timeout=10,
            )
        assert e.value.code == 405
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/secret", timeout=10)
        assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_tick_steps_are_whole_round_numbers_of_cycles() -> None:
    assert [_tick_step(span) for span in (0, 1, 2, 10, 11, 25, 60, 100, 1000)] == [
        1,
        1,
        1,
        1,
        2,
        5,
        10,
        10,
        100,
    ]


def _ledger_of_an_error_model(home: Path) -> SelfImprover:
    """A home whose store holds, in the order a run writes them: an mse model observed
    (cycle 0), a cycle with a rejected candidate, a cycle with a promotion, and one more
    cycle in which the incumbent was not measured again."""
    si = SelfImprover(home)
    store = si.store
    model = store.add_model("err", "task", "mlp")
    cap = store.upsert_capability(
        "err/mse",
        type="model_objective",
        direction="minimize",
        target=0.001,
        model_id=model.id,
        objective="mse",
    )
    store.add_measurements(cap.id, {"validation": 0.5}, context={"role": "incumbent"})

    def cycle(number: int, decision: Decision, after: float) -> None:
        e = store.add_experiment(model_id=model.id, strategy="train", objective="mse", cycle=number)
        store.update_experiment(
            e.id,
            status=ExperimentStatus.COMPLETED,
            decision=decision,
            statistics={"before": 0.5, "after": after},
        )
        if decision is Decision.PROMOTE:
            store.add_measurements(
                cap.id, {"validation": after}, context={"role": "promoted", "cycle": number}
            )
        store.add_cycle_metrics(
            iteration=number,
            models_improved=0,
            total_improvement=0.0,
            best_performance_gain=0.0,
            average_training_time=0.0,
            hormone_levels={"dopamine": 0.5},
            genetic_activations=0,
            memory_usage=0.0,
            extra={},
            timestamp=utcnow(),
        )

    cycle(1, Decision.REJECT, 0.7)
    cycle(2, Decision.PROMOTE, 0.005)
    cycle(3, Decision.REJECT, 0.9)
    return si


def test_an_error_is_drawn_on_a_log_axis_by_cycle_with_rejected_candidates(
    tmp_path: Path,
) -> None:
    with _ledger_of_an_error_model(tmp_path / "home") as si:
        [fig] = trajectory_figures(si)
        hormones = hormone_figure(si)
    assert fig.layout.yaxis.type == "log" and "(log scale)" in fig.layout.title.text
    line, star, rejected = fig.data
    # the incumbent after cycles 0..3: as registered, promoted in 2, held through 3
    assert list(line.x) == [0, 2, 3] and list(line.y) == [0.5, 0.005, 0.005]
    assert "still the incumbent" in line.text[-1]
    assert (list(star.x), list(star.y)) == ([2], [0.005])
    assert rejected.name == "rejected candidate"
    assert (list(rejected.x), list(rejected.y)) == ([1, 3], [0.7, 0.9])
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickformat == "d"
    # the target's label sits at the target (an annotation's y on a log axis is log10)
    [target] = fig.layout.annotations
    assert target.text == "target" and target.y == pytest.approx(-3.0)
    assert hormones is not None and hormones.layout.xaxis.dtick == 1
    assert list(hormones.data[0].x) == [1, 2, 3]


def test_accuracy_keeps_a_linear_axis_with_whole_cycles(busy_home: Path) -> None:
    with SelfImprover(busy_home) as si:
        [fig] = trajectory_figures(si)
        rejected = [e for e in si.store.list_experiments() if e.decision is Decision.REJECT]
    assert fig.layout.yaxis.type == "linear"
    xs = [x for trace in fig.data for x in trace.x]
    assert xs and all(isinstance(x, int) and 0 <= x <= 2 for x in xs)
    drawn = [t for t in fig.data if t.name == "rejected candidate"]
    assert sum(len(t.x) for t in drawn) == len(rejected)
