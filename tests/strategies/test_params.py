"""Strategy settings: one declared table per strategy, checked before anything runs."""

from __future__ import annotations

import math
from typing import Any

import pytest

from selfimprove.errors import ConfigError
from selfimprove.measure.training import TRAIN_OVERRIDES
from selfimprove.strategies import STRATEGIES, TRAIN_PARAMS, Budget, Param, get_strategy
from selfimprove.strategies._params import check_params


def test_train_params_declare_exactly_what_a_strategy_may_override() -> None:
    assert set(TRAIN_PARAMS) == set(TRAIN_OVERRIDES)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_declares_its_settings_with_examples(name: str) -> None:
    table = STRATEGIES[name].PARAMS
    assert table, f"{name} declares no settings"
    for key, param in table.items():
        assert isinstance(param, Param)
        assert param.example.startswith(f"{key}="), (name, key, param.example)


def test_text_from_a_command_line_is_parsed_to_the_declared_types() -> None:
    got = get_strategy("train").check_params(
        {"lr": "0.01", "batch_size": "32", "optimizer": " sgd ", "clip_norm": "none"}
    )
    assert got == {"lr": 0.01, "batch_size": 32, "optimizer": "sgd", "clip_norm": None}
    assert get_strategy("prune").check_params({"reconstruct": "false", "keep": 0.25}) == {
        "reconstruct": False,
        "keep": 0.25,
    }
    assert get_strategy("grow").check_params({"growths": "widen,deepen"}) == {
        "growths": ("widen", "deepen")
    }
    assert get_strategy("distill").check_params({"student_params": '{"width": 8}'}) == {
        "student_params": {"width": 8}
    }
    assert get_strategy("train").check_params({"batch_size": 64.0}) == {"batch_size": 64}


def test_an_unknown_key_names_the_strategys_settings() -> None:
    with pytest.raises(ConfigError) as info:
        get_strategy("train").check_params({"nosuchkey": "1"})
    message = str(info.value)
    assert "train does not understand the settings ['nosuchkey']" in message
    assert "batch_size, clip_norm, lr, optimizer, patience, schedule, weight_decay" in message


@pytest.mark.parametrize(
    ("strategy", "params", "needle"),
    [
        ("train", {"lr": "abc"}, "lr='abc' is not a finite number > 0"),
        ("train", {"lr": "nan"}, "lr='nan'"),
        ("train", {"lr": math.nan}, "lr=nan"),
        ("train", {"lr": "inf"}, "lr='inf'"),
        ("train", {"lr": "-1"}, "lr='-1'"),
        ("train", {"lr": 0}, "lr=0"),
        ("train", {"lr": True}, "lr=True"),
        ("train", {"batch_size": "2.5"}, "batch_size='2.5' is not an integer in [1, 1000000]"),
        ("train", {"batch_size": 10**400}, "batch_size=1000"),
        ("train", {"optimizer": "adamx"}, "is not one of adam, adamw, sgd"),
        ("prune", {"keep": 1}, "keep=1 is not a finite number in (0, 1)"),
        ("prune", {"reconstruct": "maybe"}, "is not true or false"),
        ("grow", {"growths": "widen,widen"}, "one or more distinct names"),
        ("distill", {"student_params": '{"width": NaN}'}, "is not a JSON object"),
        ("quantize", {"engines": "tensorrt"}, "engines='tensorrt'"),
        ("tune", {"trial_epochs": 31}, "is not an integer in [1, 30] (at most the budget's"),
        ("evolve", {"refit_share": 0.95}, "refit_share=0.95"),
        ("heads", {"prune_fraction": "1"}, "prune_fraction='1'"),
    ],
)
def test_bad_values_are_refused_with_the_value_and_an_example(
    strategy: str, params: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        get_strategy(strategy).check_params(params, Budget(epochs=30))
    message = str(info.value)
    assert needle in message and "e.g. " in message and "\n" not in message


def test_a_value_shown_in_a_message_is_cut_to_one_readable_line() -> None:
    with pytest.raises(ConfigError) as info:
        check_params("train", TRAIN_PARAMS, {"lr": "x" * 5000})
    assert len(str(info.value)) < 300


def test_settings_that_are_not_a_mapping_are_refused() -> None:
    with pytest.raises(ConfigError, match="must be a mapping of names"):
        get_strategy("train").check_params([("lr", 0.1)])  # type: ignore[arg-type]


def test_the_strategy_reads_the_checked_values() -> None:
    """``train`` builds its TrainConfig from the parsed table, so text never reaches training."""
    from selfimprove.strategies import StrategyContext
    from tests.conftest import wine_task

    context = StrategyContext(
        task=wine_task(),
        objective="accuracy",
        budget=Budget(epochs=3),
        seed=0,
        params={"lr": "0.05", "optimizer": "sgd"},
    )
    cfg = get_strategy("train").config(context)  # type: ignore[attr-defined]
    assert cfg.lr == 0.05 and cfg.optimizer == "sgd" and cfg.epochs == 3
