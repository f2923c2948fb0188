"""Built-in tasks of the embedded default. Their first incumbents start deliberately weak.

- ``pattern_recognition``: a classifier of scikit-learn's bundled 8×8 handwritten digits.
- ``neural_sort``: a neural alternative to an algorithm — an MLP that learns to sort six numbers,
  with labels computed by ``numpy.sort`` (the algorithm is the ground truth).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from selfimprove.seeding import numpy_rng
from selfimprove.tasks._base import SupervisedTask
from selfimprove.tasks._mlp import build_mlp
from selfimprove.tasks._space import MLP_SPACE

__all__ = ["neural_sort", "pattern_recognition"]

SORT_WIDTH = 6


def pattern_recognition() -> SupervisedTask:
    """Digits classifier (1797 images, 10 classes, split 60/20/20 stratified)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)  # pixel intensities 0..16 -> 0..1

    def build(params: Mapping[str, Any]) -> Any:
        return build_mlp(64, 10, params)

    return SupervisedTask.classification(
        "pattern_recognition",
        x,
        data.target,
        build=build,
        default_params={"width": 128, "depth": 1, "activation": "relu", "dropout": 0.1},
        initial_params={"width": 16, "depth": 1, "activation": "relu", "dropout": 0.0},
        initial_training={"epochs": 2, "lr": 3e-3},
        target=0.97,
        family="image_classification",
        search_space=MLP_SPACE,
    )


def neural_sort(n_examples: int = 5000) -> SupervisedTask:
    """Sort six numbers in [0, 1): inputs uniform, labels from ``numpy.sort``."""
    rng = numpy_rng("neural_sort", "data")
    x = rng.random((n_examples, SORT_WIDTH), dtype=np.float64).astype(np.float32)
    y = np.sort(x, axis=1)

    def build(params: Mapping[str, Any]) -> Any:
        return build_mlp(SORT_WIDTH, SORT_WIDTH, params)

    return SupervisedTask.regression(
        "neural_sort",
        x,
        y,
        build=build,
        default_params={"width": 128, "depth": 2, "activation": "relu", "dropout": 0.0},
        initial_params={"width": 32, "depth": 2, "activation": "relu", "dropout": 0.0},
        initial_training={"epochs": 2, "lr": 3e-3},
        target=5e-4,
        family="neural_alternative",
        search_space=MLP_SPACE,
    )
