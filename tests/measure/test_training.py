from __future__ import annotations

import pytest
import torch

from selfimprove.errors import ConfigError, DivergedError
from selfimprove.measure.training import TrainConfig, train_
from tests.conftest import wine_task


def _fresh(task, seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return task.build({"width": 16, "depth": 1, "dropout": 0.2})


def test_training_lowers_the_loss_on_unseen_data() -> None:
    task = wine_task()
    m = _fresh(task)
    val = task.splits().validation
    with torch.no_grad():
        before = float(task.loss(m(val.x), val.y))
    result = train_(m, task, TrainConfig(epochs=30, seed=0, lr=3e-3))
    with torch.no_grad():
        after = float(task.loss(m(val.x), val.y))
    assert after < before * 0.5
    assert result.epochs_run >= 1 and len(result.history) == result.epochs_run


def test_same_seed_same_weights_with_dropout() -> None:
    task = wine_task()
    a, b = _fresh(task), _fresh(task)
    train_(a, task, TrainConfig(epochs=5, seed=7))
    train_(b, task, TrainConfig(epochs=5, seed=7))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_global_rng_is_left_alone() -> None:
    task = wine_task()
    module = _fresh(task)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_(module, task, TrainConfig(epochs=2, seed=0))
    assert torch.equal(torch.rand(3), expected)


def test_exploding_learning_rate_is_a_diverged_error() -> None:
    task = wine_task()
    m = _fresh(task)
    with pytest.raises(DivergedError, match="diverged"):
        train_(m, task, TrainConfig(epochs=20, lr=1e12, optimizer="sgd", clip_norm=None, seed=0))


def test_early_stopping_keeps_the_best_holdout_weights() -> None:
    task = wine_task()
    m = _fresh(task)
    result = train_(m, task, TrainConfig(epochs=200, patience=3, seed=0, lr=1e-2))
    assert result.stopped == "early_stopping"
    assert result.best_epoch == result.epochs_run - 3
    best = min(r["holdout_loss"] for r in result.history)
    assert result.best_holdout_loss == pytest.approx(best)


def test_time_budget_stops_training() -> None:
    task = wine_task()
    result = train_(_fresh(task), task, TrainConfig(epochs=100_000, patience=0, max_seconds=0.2))
    assert result.stopped == "time_budget" and result.seconds < 5


@pytest.mark.parametrize(
    ("field", "value"), [("epochs", 0), ("lr", -1.0), ("schedule", "warp"), ("batch_size", 0)]
)
def test_bad_config_names_the_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})  # type: ignore[arg-type]
