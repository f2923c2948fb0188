"""The ``device`` setting: names checked, an absent device refused before anything is written,
every strategy run with ``device="cpu"`` given explicitly, task views on another device, and
the judge saying which device it timed.

No GPU on the test machine: the CUDA path is exercised where one is lent (see the note of
issue 19); here the ``meta`` device stands in where only placement is checked.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.evaluation import Evaluator, LatencyProfile
from selfimprove.measure.judge import Judge
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.device import CPU, resolve_device
from selfimprove.store import ExperimentStatus
from selfimprove.strategies import Budget
from selfimprove.tasks import SupervisedTask, device_of, on_device
from tests.conftest import wine_task

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

#: Strategies of the main loop that apply to an MLP classification task (``heads`` needs a
#: language-model task; its own tests cover it).
MLP_STRATEGIES = ("train", "retrain", "tune", "evolve", "grow", "quantize", "prune", "distill")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:0", "", "CUDA", "auto:1"])
def test_an_unknown_device_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        SelfImprovementConfig(device=name)


@pytest.mark.parametrize("name", ["cpu", "auto", "cuda", "cuda:1"])
def test_known_device_names_are_accepted(name: str) -> None:
    assert SelfImprovementConfig(device=name).device == name
    assert SelfImprovementConfig.from_dict(SelfImprovementConfig(device=name).to_dict()).device == (
        name
    )


@no_cuda
def test_auto_is_the_cpu_without_cuda() -> None:
    assert resolve_device("auto") == CPU


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_one_clear_error_and_writes_nothing(home: Path, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        SelfImprover(home, config=SelfImprovementConfig(device=name))
    message = str(info.value)
    assert "\n" not in message and "not available here" in message and "cpu" in message
    assert not home.exists()


@no_cuda
def test_cli_refuses_an_absent_device_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for args, says in (
        (["run", "--device", "cuda", "--cycles", "1"], "not available here"),
        (["run", "--device", "tpu"], "unknown device"),
        (["improve", "wine", "--device", "cuda"], "not available here"),
        (["mcp", "--device", "cuda:0"], "not available here"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "selfimprove", *args, "--home", str(home)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert says in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert not home.exists(), args


def _registered(si: SelfImprover) -> None:
    """Two wine models (the second teaches the first in ``distill``)."""
    task = wine_task()
    for name, width, seed in (("wine", 16, 0), ("wine_wide", 64, 1)):
        torch.manual_seed(seed)
        module = task.build({"width": width, "depth": 1})
        train_(module, task, TrainConfig(epochs=3, seed=seed))
        si.register_model(name, task, module, {"width": width, "depth": 1})


@pytest.mark.parametrize("strategy", MLP_STRATEGIES)
def test_every_strategy_runs_with_the_cpu_given_explicitly(home: Path, strategy: str) -> None:
    config = SelfImprovementConfig(train_epochs=6, train_seconds=20.0, device="cpu")
    with SelfImprover(home, config=config, seed=0) as si:
        assert si.device == CPU and si.evaluator.device == CPU
        _registered(si)
        out = si.improve("wine", strategy, budget=Budget(epochs=6, seconds=20.0))
        assert out.status == "completed", (strategy, out.reason)
        (exp,) = si.store.list_experiments()
        assert exp.status is ExperimentStatus.COMPLETED
        # Every model the judge timed was timed on the CPU, and the record says so.
        assert exp.statistics.get("latency_device", "cpu") == "cpu"
        si.registry.load("wine")  # the stored candidate or incumbent loads (checksum verified)


def test_explicit_cpu_gives_the_same_decisions_as_the_default(tmp_path: Path) -> None:
    def run(device: str | None) -> list[tuple[str, str, float | None]]:
        config = SelfImprovementConfig(train_epochs=5, train_seconds=20.0)
        if device is not None:
            config = dataclasses.replace(config, device=device)
        with SelfImprover(tmp_path / str(device), config=config, seed=3) as si:
            _registered(si)
            outs = [si.improve("wine", s, budget=Budget(5, 20.0)) for s in ("train", "grow")]
        return [(o.strategy, o.reason, o.after) for o in outs]

    assert run("cpu") == run(None) == run("auto" if not torch.cuda.is_available() else "cpu")


def test_a_task_view_on_another_device_keeps_the_task_and_moves_data_and_modules() -> None:
    task = wine_task()
    meta = torch.device("meta")  # a device without data: placement only
    view = on_device(task, meta)
    assert isinstance(view, SupervisedTask) and type(view).__name__ == type(task).__name__
    assert (view.name, view.objectives, view.search_space()) == (
        task.name,
        task.objectives,
        task.search_space(),
    )
    assert device_of(view) == meta and device_of(task) == CPU
    for split in ("train", "validation", "test"):
        moved, kept = view.splits().get(split), task.splits().get(split)
        assert moved.x.device == meta and moved.y.device == meta
        assert kept.x.device == CPU and moved.x.shape == kept.x.shape
    assert {p.device for p in view.build({"width": 8, "depth": 1}).parameters()} == {meta}
    assert view.example_input(4).device == meta
    back = on_device(view, CPU)  # a view of a view is made from the task itself
    assert device_of(back) == CPU and torch.equal(back.splits().train.x, task.splits().train.x)
    assert on_device(view, meta) is view


def test_per_example_metrics_get_cpu_tensors() -> None:
    task = wine_task()
    seen: list[torch.device] = []
    per_example = task.per_example

    def recording(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        seen.extend([outputs.device, targets.device])
        return per_example(outputs, targets)

    task.per_example = recording  # type: ignore[method-assign]
    view = on_device(task, CPU)
    module = view.build({"width": 8, "depth": 1})
    Evaluator(device=CPU).scores(module, view, "validation")
    assert seen and set(seen) == {CPU}


def test_the_judge_says_which_device_timed_a_latency_target() -> None:
    task = wine_task()
    module = task.build({"width": 8, "depth": 1})
    (ev,) = Evaluator().evaluate([module], task)
    assert ev.latency is not None and ev.latency.device == "cpu"
    fast = LatencyProfile(ev.latency.batch1_ms / 4, ev.latency.serving_ms / 4, 64, "cuda:0")
    slow = dataclasses.replace(fast, batch1_ms=ev.latency.batch1_ms, device="cuda:0")
    verdict = Judge().judge(
        task,
        dataclasses.replace(ev, latency=slow),
        dataclasses.replace(ev, latency=fast),
        "latency_ms",
    )
    assert verdict.statistics["latency_device"] == "cuda:0"
    assert "(timed on cuda:0)" in verdict.reason
    on_cpu = Judge().judge(task, ev, ev, "latency_ms")
    assert on_cpu.statistics["latency_device"] == "cpu" and "timed on" not in on_cpu.reason
