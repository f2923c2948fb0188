"""The gain-prediction task (time-ordered splits of the ledger) and its registration as a model."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import ConfigError, TaskError
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.meta.gain.features import (
    GAIN_MODEL_NAME,
    GAIN_TASK_NAME,
    MIN_EXPERIMENTS,
    ExperimentFacts,
    FeatureEncoding,
    experiment_features,
    time_split_sizes,
)
from selfimprove.registry import ModelHome
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.store import (
    Store,
)
from selfimprove.tasks import (
    MLP_SPACE,
    SPLITS,
    DataSplits,
    Split,
    SupervisedTask,
    build_mlp,
    register_task,
)

logger = logging.getLogger(__name__)


class GainPredictionTask(SupervisedTask):
    """Predict an experiment's realised gain from its features, on a snapshot of the ledger.

    Splits by time (oldest 60 % train, next 20 % validation, newest 20 % test); the model is an
    MLP from :data:`MLP_SPACE` params with one output; primary objective ``mse`` with target
    ``0.5 × min(mean((y_val − mean(y_train))²), mean(y_val²))`` (floored at 1e-6).

    Args:
        store: The ledger to learn from (read once, now).
        name: Task name (one task of a name per process).
        min_experiments: Fewest finished experiments accepted.
        facts: ``experiment_facts(store)`` when already computed (default: read now).

    Raises:
        TaskError: Fewer than ``min_experiments`` finished experiments, or
            ``min_experiments < 3``.

    Attributes:
        encoding: The feature encoding.
        split_ids: Experiment ids of each split.
        fit_through_id: The newest experiment id of the train and validation splits: a model of
            this task never learnt from, nor was selected on, a newer experiment.
    """

    def __init__(
        self,
        store: Store,
        *,
        name: str = GAIN_TASK_NAME,
        min_experiments: int = MIN_EXPERIMENTS,
        facts: Sequence[ExperimentFacts] | None = None,
    ) -> None:
        if min_experiments < 3:
            raise TaskError(f"min_experiments must be >= 3, but got {min_experiments=}.")
        x, y, ids = experiment_features(store, facts)
        if len(ids) < min_experiments:
            raise TaskError(
                f"the gain model needs at least {min_experiments} finished experiments to learn "
                f"from, but the history holds {len(ids)}; run more improvement cycles first "
                f"(about {min_experiments - len(ids)} more) or lower min_experiments."
            )
        n_train, n_val, _ = time_split_sizes(len(ids))
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)[:, None]  # (n, F), (n, 1)
        bounds = (0, n_train, n_train + n_val, len(ids))
        parts = [slice(bounds[i], bounds[i + 1]) for i in range(3)]
        splits = DataSplits(*(Split(xs[p], ys[p]) for p in parts))
        self.encoding = FeatureEncoding()
        self.split_ids: dict[str, tuple[int, ...]] = {
            split: tuple(ids[p]) for split, p in zip(SPLITS, parts, strict=True)
        }
        self.fit_through_id = ids[n_train + n_val - 1]
        # Half the validation error of the better constant guess (the mean training gain, or
        # no gain at all). It only says when to stop spending effort; the judge decides.
        y_val = y[n_train : n_train + n_val].astype(np.float64)
        constant = min(
            float(np.mean((y_val - float(np.mean(y[:n_train]))) ** 2)), float(np.mean(y_val**2))
        )
        target = max(0.5 * constant, 1e-6)
        width = self.encoding.width

        def build(params: Mapping[str, Any]) -> nn.Module:
            return build_mlp(width, 1, params)

        super().__init__(
            name,
            kind="regression",
            splits=splits,
            build=build,
            default_params={"width": 32, "depth": 2, "activation": "relu", "dropout": 0.0},
            initial_params={"width": 8, "depth": 1, "activation": "relu", "dropout": 0.0},
            initial_training={"epochs": 1, "lr": 1e-3},
            target=target,
            family="meta_learning",
            search_space=MLP_SPACE,
        )
        logger.info(
            "gain task %s: %d experiments (train %d, validation %d, test %d), mse target %.3g",
            name,
            len(ids),
            n_train,
            n_val,
            len(ids) - n_train - n_val,
            target,
        )


def register_gain_model(
    improver: ModelHome,
    store: Store,
    *,
    seed: int,
    name: str = GAIN_MODEL_NAME,
    task_name: str = GAIN_TASK_NAME,
    min_experiments: int = MIN_EXPERIMENTS,
    facts: Sequence[ExperimentFacts] | None = None,
) -> str:
    """Build the gain task from ``store``'s history, register it, and register its first model.

    The first model is deliberately weak (an 8-unit MLP trained one epoch), so the loop has
    something to improve. When ``name`` is already registered (e.g. in a new process), only the
    task is rebuilt from the current history and registered again; the model is left as it is
    (the encoding is fixed, so its checkpoints still load).

    Args:
        improver: Where the model is registered (its loop improves it).
        store: The ledger to learn from (usually ``improver.store``).
        seed: Seeds the first model's initial weights and training.
        name: Model name.
        task_name: Task name (registered in this process).
        min_experiments: Fewest finished experiments accepted.
        facts: ``experiment_facts(store)`` when already computed (default: read now).

    Returns:
        The model's name.

    Raises:
        TaskError: Too few finished experiments (the message says how many more are needed).
        ConfigError: ``name`` is taken by a model of another task.
    """
    task = GainPredictionTask(store, name=task_name, min_experiments=min_experiments, facts=facts)
    register_task(task)
    existing = improver.store.find_model(name)
    if existing is not None:
        if existing.task != task_name:
            raise ConfigError(
                f"model {name!r} already exists for task {existing.task!r}, not {task_name!r}; "
                "pass another name to register_gain_model."
            )
        logger.info("gain task %s rebuilt from the history; model %s kept", task_name, name)
        return name
    params = task.initial_params()
    init_seed = derive_seed(seed, "initial", name)
    with torch_seeded(init_seed):
        module = task.build(params)
    train_(module, task, TrainConfig(seed=init_seed, **task.initial_training()))
    improver.register_model(
        name,
        task,
        module,
        params,
        description=(
            "predicts an experiment's realised gain from the ledger (deliberately weak start)"
        ),
    )
    logger.info("registered %s on %s", name, task_name)
    return name


# ---------------------------------------------------------------------- predictor
