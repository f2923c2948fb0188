"""Shared fixtures: tiny real tasks on CPU and a fresh home folder per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.tasks import SupervisedTask, build_mlp

torch.set_num_threads(1)


def wine_task(name: str = "wine_test", target: float = 0.99) -> SupervisedTask:
    """A small real classification task (scikit-learn's bundled wine data, standardised)."""
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return SupervisedTask.classification(
        name,
        x,
        y,
        build=lambda p: build_mlp(13, 3, p),
        default_params={"width": 16, "depth": 1},
        target=target,
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SELFIMPROVE_DB", raising=False)
    monkeypatch.delenv("SELFIMPROVE_HOME", raising=False)
    monkeypatch.delenv("SELFIMPROVE_CRASH_AT", raising=False)
    return tmp_path / "home"


@pytest.fixture
def fast_config() -> SelfImprovementConfig:
    return SelfImprovementConfig(train_epochs=20, train_seconds=30.0)


@pytest.fixture
def improver(home: Path, fast_config: SelfImprovementConfig) -> Iterator[SelfImprover]:
    si = SelfImprover(home, config=fast_config, seed=0)
    yield si
    si.close()
