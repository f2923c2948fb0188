from __future__ import annotations

import numpy as np
import pytest
import torch

from selfimprove.errors import NotFoundError, TaskError
from selfimprove.tasks import BUILTIN_TASKS, SupervisedTask, build_mlp, resolve_task


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_builtin_tasks_split_disjointly_and_build(name: str) -> None:
    task = resolve_task(name)
    s = task.splits()
    n = len(s.train) + len(s.validation) + len(s.test)
    rows = torch.cat([s.train.x, s.validation.x, s.test.x])
    assert len(torch.unique(rows, dim=0)) == n  # no example in two splits
    assert abs(len(s.train) / n - 0.6) < 0.01
    out = task.build(task.initial_params())(s.validation.x[:4])
    assert out.shape[0] == 4
    assert resolve_task(name) is task  # same object, same splits


def test_neural_sort_labels_come_from_the_algorithm() -> None:
    s = resolve_task("neural_sort").splits().test
    assert torch.equal(s.y, torch.sort(s.x, dim=1).values)


def test_classification_split_is_stratified_and_seeded() -> None:
    x = np.arange(200, dtype=float)[:, None]
    y = np.array([0] * 150 + [1] * 50)
    t1 = SupervisedTask.classification(
        "t", x, y, build=lambda p: build_mlp(1, 2, p), default_params={"width": 4}
    )
    t2 = SupervisedTask.classification(
        "t", x, y, build=lambda p: build_mlp(1, 2, p), default_params={"width": 4}
    )
    assert torch.equal(t1.splits().test.x, t2.splits().test.x)
    assert float(t1.splits().validation.y.float().mean()) == pytest.approx(0.25, abs=0.03)


def test_unknown_task_explains_how_to_register() -> None:
    with pytest.raises(NotFoundError, match="register_task"):
        resolve_task("nope")
    with pytest.raises(NotFoundError, match="cannot import"):
        resolve_task("no.such.module:task")


def test_task_by_import_path() -> None:
    task = resolve_task("tests._tasks:wine")
    assert task.name == "wine_test" and task.primary.name == "accuracy"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"width": 0}, "width"),
        ({"activation": "swish"}, "activation"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_mlp_params_are_checked(params: dict[str, object], needle: str) -> None:
    with pytest.raises(TaskError, match=needle):
        build_mlp(3, 2, params)


def test_uneven_widths_build() -> None:
    m = build_mlp(3, 2, {"widths": [8, 4]})
    assert [layer.out_features for layer in m if isinstance(layer, torch.nn.Linear)] == [8, 4, 2]


def test_nan_outputs_count_as_wrong() -> None:
    task = resolve_task("pattern_recognition")
    out = torch.full((3, 10), float("nan"))
    assert task.per_example(out, torch.tensor([0, 1, 2]))["accuracy"].sum() == 0


@pytest.mark.parametrize(
    ("labels", "needle"),
    [
        ([1, 2, 3], "they run from 1 to 3"),
        ([0, 1.5, 2], "some are not integers"),
        ([-1, 0, 1], "they run from -1 to 1"),
        (["a", "b", "c"], "some are not integers"),
    ],
)
def test_class_labels_other_than_0_to_c_minus_1_are_refused_at_once(
    labels: list[object], needle: str
) -> None:
    x = np.zeros((30, 2))
    y = np.array(labels * 10)
    with pytest.raises(TaskError, match=needle):
        SupervisedTask.classification(
            "labels", x, y, build=lambda p: torch.nn.Linear(2, 3), default_params={}
        )


_X = np.arange(60, dtype=float).reshape(30, 2)
_NAN_X = np.where(np.arange(60).reshape(30, 2) == 7, np.nan, _X)


@pytest.mark.parametrize(
    ("kind", "x", "y", "needle"),
    [
        ("classification", np.zeros(30), [0, 1, 2] * 10, r"shape \(30,\); for one feature"),
        ("classification", _X, [0, 1, 2] * 9, "30 inputs but 27 targets"),
        ("classification", _NAN_X, [0, 1, 2] * 10, r"1 input row\(s\) hold NaN"),
        ("regression", _X, [0.0] * 29 + [float("inf")], "targets are NaN or infinity"),
        ("regression", [["a", "b"]] * 30, [0.0] * 30, "must be an array of numbers"),
        ("classification", _X, [0] * 29 + [1], "give each class at least 5 examples"),
        ("regression", _X[:8], [0.0] * 8, "at least 10 examples"),
    ],
)
def test_bad_arrays_are_refused_when_the_task_is_made(
    kind: str, x: object, y: object, needle: str
) -> None:
    make = SupervisedTask.classification if kind == "classification" else SupervisedTask.regression
    with pytest.raises(TaskError, match=needle):
        make("bad", x, y, build=lambda p: torch.nn.Linear(2, 3), default_params={})


def test_integral_float_labels_from_0_are_accepted() -> None:
    x, y = np.zeros((30, 2)), np.array([0.0, 1.0, 2.0] * 10)
    task = SupervisedTask.classification(
        "floats", x, y, build=lambda p: torch.nn.Linear(2, 3), default_params={}
    )
    assert set(task.splits().train.y.tolist()) == {0, 1, 2}


def test_a_point_of_a_space_has_every_key_and_values_inside() -> None:
    from selfimprove.tasks import CategoricalParam, FloatParam, IntParam, point_in

    space = {"w": IntParam(1, 8), "lr": FloatParam(1e-4, 1.0), "act": CategoricalParam(("relu",))}
    good = {"w": 4, "lr": 0.1, "act": "relu", "extra": 1}
    assert point_in(space, good) == {"w": 4, "lr": 0.1, "act": "relu"}
    assert point_in(space, {**good, "w": 9}) is None
    assert point_in(space, {**good, "w": True}) is None  # a bool is not a width
    assert point_in(space, {"w": 4, "lr": 0.1}) is None  # a key missing
    assert point_in(space, {**good, "act": "tanh"}) is None
    assert point_in(space, [4, 0.1, "relu"]) is None
