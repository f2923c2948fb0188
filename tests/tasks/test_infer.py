"""Search spaces inferred for MLP-shaped models whose task gives none."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from selfimprove.tasks import (
    MLP_SPACE,
    SPACE_FROM_TASK,
    CategoricalParam,
    FloatParam,
    IntParam,
    SupervisedTask,
    build_mlp,
    effective_search_space,
    infer_search_space,
    resolve_task,
)

Builder = Callable[[Mapping[str, Any]], nn.Module]


def readme_build(params: Mapping[str, Any]) -> nn.Module:
    """The README's own-model builder: one hidden layer of ``width`` units."""
    return nn.Sequential(nn.Linear(13, params["width"]), nn.ReLU(), nn.Linear(params["width"], 3))


def wine(build: Builder, name: str = "wine_infer", **kwargs: Any) -> SupervisedTask:
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    kwargs.setdefault("default_params", {"width": 8})
    return SupervisedTask.classification(name, x.astype(np.float32), y, build=build, **kwargs)


def test_the_readme_builder_gets_a_width_range_around_the_incumbent() -> None:
    task = wine(readme_build)
    rng_before = torch.get_rng_state()
    space, reason = infer_search_space(task, {"width": 8})
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    assert space == {"width": IntParam(2, 128, log=True)}
    assert "width" in reason and "around 8" in reason
    assert infer_search_space(task, {"width": 8}) == (space, reason)  # deterministic

    same, source = effective_search_space(task, {"width": 8})
    assert same == space and source == f"inferred: {reason}"
    # Around the incumbent's params, not the defaults; wide ones are capped at 1024.
    assert infer_search_space(task, {"width": 200})[0] == {"width": IntParam(50, 1024, log=True)}


def test_build_mlp_params_are_all_inferred_and_lists_are_left_alone() -> None:
    params = {"width": 16, "depth": 2, "activation": "relu", "dropout": 0.0}
    task = wine(lambda p: build_mlp(13, 3, p), default_params=params)
    space, reason = infer_search_space(task, params)
    assert space == {
        "activation": CategoricalParam(("relu", "gelu", "tanh", "silu")),
        "depth": IntParam(1, 4),
        "dropout": FloatParam(0.0, 0.5),
        "width": IntParam(4, 256, log=True),
    }
    uneven = {"widths": [16, 8]}
    space, reason = infer_search_space(task, uneven)
    assert space is None and "widths: a list, not inferred" in reason


def test_a_builder_that_breaks_for_large_widths_is_capped() -> None:
    def fragile(params: Mapping[str, Any]) -> nn.Module:
        if params["width"] > 40:
            raise ValueError("too wide for this device")
        return readme_build(params)

    space, reason = infer_search_space(wine(fragile), {"width": 8})
    assert space == {"width": IntParam(2, 32, log=True)}
    assert "capped from [2, 128]" in reason and "too wide" in reason


def test_a_param_that_only_builds_at_its_own_value_is_dropped() -> None:
    def only_eight(params: Mapping[str, Any]) -> nn.Module:
        if params["width"] != 8:
            raise ValueError("width must be 8")
        return readme_build(params)

    space, reason = infer_search_space(wine(only_eight), {"width": 8})
    assert space is None and "only 8 builds" in reason


def test_a_param_that_changes_the_output_shape_is_dropped() -> None:
    def head_width(params: Mapping[str, Any]) -> nn.Module:  # the output size, named like a width
        return nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Linear(16, params["out_width"]))

    task = wine(head_width, default_params={"out_width": 3})
    space, reason = infer_search_space(task, {"out_width": 3})
    assert space is None and "output shape" in reason


def test_a_builder_ignoring_its_params_gives_none() -> None:
    space, reason = infer_search_space(wine(lambda p: nn.Linear(13, 3)), {"width": 8})
    assert space is None and "the builder ignores it" in reason
    space, source = effective_search_space(wine(lambda p: nn.Linear(13, 3)), {"width": 8})
    assert space is None and source.startswith("none: ")


def test_a_conv_model_is_not_mlp_shaped() -> None:
    def conv(params: Mapping[str, Any]) -> nn.Module:
        w = params["width"]
        return nn.Sequential(
            nn.Unflatten(1, (1, 13)),  # (B, 13) -> (B, 1, 13)
            nn.Conv1d(1, w, 3),  # -> (B, w, 11)
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),  # -> (B, w)
            nn.Linear(w, 3),
        )

    space, reason = infer_search_space(wine(conv), {"width": 8})
    assert space is None and "not MLP-shaped" in reason and "Conv1d" in reason


def test_a_task_with_its_own_space_keeps_it() -> None:
    own = {"width": IntParam(4, 128, log=True)}
    task = wine(readme_build, search_space=own)
    assert effective_search_space(task, {"width": 8}) == (own, SPACE_FROM_TASK)
    space, reason = infer_search_space(task, {"width": 8})
    assert space is None and "own search space" in reason
    builtin = resolve_task("pattern_recognition")
    assert effective_search_space(builtin, builtin.default_params()) == (MLP_SPACE, "task")


@pytest.mark.parametrize("params", [{"width": "eight"}, {"width": -2}, {"width": True}])
def test_params_that_are_not_numbers_or_do_not_build_give_none(params: dict[str, Any]) -> None:
    space, reason = infer_search_space(wine(readme_build), params)
    assert space is None and reason
