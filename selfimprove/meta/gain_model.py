"""The gain-prediction model: a network that learns, from the ledger, what an experiment will gain.

It is itself a registered model, improved by the same loop as every other one ("networks
improving networks"): :func:`register_gain_model` turns the experiment history into a
:class:`GainPredictionTask` and registers a first, deliberately weak model ``gain_predictor``;
``improver.run(models=["gain_predictor"])`` then trains and judges it like any model (and the
system's planner may tune or evolve it: its task offers :data:`MLP_SPACE`).

**Rows.** One row per *finished* model experiment (status ``completed`` or ``failed``; ``stale``
ones were cut short by a crash and say nothing about the strategy), oldest first (by id, which
is creation order).

**Target.** ``y`` = the realised gain: the judge's ``relative_improvement`` of the targeted
objective (relative reduction of its error-like form, validation split) when the candidate was
promoted, else 0 (rejected or failed). This is exactly the gain the system's ``_learn`` feeds to
the bandit, before it divides by seconds. We predict *gain*, not gain per second: seconds depend
on the machine and on what else runs on it (two shared CPU cores here), so gain per second is
noisy and not stationary, while the gain is a property of (strategy, model, weakness). The
budget is a feature, so a planner divides the predicted gain by the seconds it expects to spend.

**Features** (``FEATURE_NAMES``, 24 columns; every transform is fixed, never fitted on data, so a
checkpoint keeps its meaning when the task is rebuilt from a longer history, in any process):

- ``strategy=<name>``: one-hot over :data:`selfimprove.strategies.STRATEGIES` (7 columns; a
  strategy outside the table gives all zeros).
- ``kind=<kind>``: one-hot over :data:`selfimprove.brain.planning.KINDS` (4 columns). The kind the
  system planned, read from ``cycle_metrics.extra.tasks`` (matched on cycle, model name and
  strategy); experiments run outside a system cycle (``improve``, ``run``) have no recorded kind
  and take their strategy's family, which is the kind a user's task gets for that strategy.
- ``family_bucket=<i>``: the model's task family hashed into ``FAMILY_BUCKETS`` = 8 buckets,
  ``derive_seed("family", family) % 8`` (stable across processes; unrelated families may share
  a bucket, which only blurs the feature, never breaks the encoding).
- ``log10_parameters``: ``log10(max(P, 1)) / 6`` with ``P`` the incumbent's parameter count from
  its version's metrics (``metrics["parameters"]``); versions without it use
  ``size_bytes / 4`` (float32 weights), and no incumbent at all gives 0. A 1M-parameter model
  reads 1.0.
- ``log1p_gap``: ``log(1 + min(gap, 100))`` with ``gap`` the incumbent's direction-aware relative
  shortfall from the capability's target on the targeted objective, as
  :meth:`selfimprove.objectives.Objective.gap` defines it: ``max(0, target - before) / |target|``
  for a maximized objective, ``max(0, before - target) / |target|`` for a minimized one (0 when
  met; 100 when the target is 0 and missed). ``before`` is the judge's ``statistics["before"]``;
  a failed experiment has none, so the incumbent version's recorded ``validation_<objective>``
  (or ``<objective>``) metric is used.
- ``gap_known``: 1 when both ``before`` and the target were found, else 0 (and the gap reads 0).
- ``log10_epochs``: ``log10(1 + epochs) / 2`` with ``epochs`` the budget's epochs
  (``params["budget"]["epochs"]``); 100 epochs read about 1.0.
- ``model_level_objective``: 1 when the targeted objective is a property of the model itself
  (``latency_ms``, ``size_bytes``, ``parameters``: optimisation targets, where the data
  objective becomes a guard), 0 for a data objective (accuracy, mse).

**Task.** :class:`GainPredictionTask` splits the rows in *time order*: the oldest 60 % train,
the next 20 % validation (the judge decides on it), the newest 20 % test (only reported), so no
model ever learns from an experiment newer than one it is judged on. Primary objective ``mse``;
its target is half the validation error of the better constant guess,
``0.5 × min(mean((y_val − mean(y_train))²), mean(y_val²))`` floored at 1e-6: the model must do
twice as well as "the usual gain" or "no gain". The target only tells the loop when to stop
spending effort on the gain model (``run`` skips a model at target); the judge alone promotes.

**Predictions** are the network's output clipped to [0, 1], the range of a realised gain.

**Against the bandit.** :func:`compare_with_bandit` measures, on experiments newer than any the
predictor could have learnt from or been selected on (the task's test split, and everything
finished since the snapshot), the mean absolute error of the predicted gain and of the bandit's
estimate in the same unit: the bandit's posterior mean reward (gain per second) for the
experiment's (kind, family) context and strategy — its prior mean if that arm was never tried
there — times the experiment's own ``max(seconds, 0.5)``: the very denominator the system used
to turn that gain into a reward, so the conversion is exact and, since it uses the realised
seconds, generous to the bandit. The bandit is replayed from the same older experiments (with
the given bandit's prior), because the live bandit has already been fed the held-out outcomes.
The gain model decides only when its error is strictly smaller (and, when ``alpha`` is given,
when the judge's one-sided paired bootstrap over the per-experiment absolute errors agrees at
``alpha``: a difference of a thousandth on nine experiments should not hand over the planning).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.brain.planning import KINDS
from selfimprove.errors import ConfigError, TaskError
from selfimprove.measure.judge import paired_test
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.objectives import EFFICIENCY_OBJECTIVES, Direction, Objective
from selfimprove.registry import ModelHome, Registry
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.store import (
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    Store,
    VersionRecord,
)
from selfimprove.strategies import STRATEGIES
from selfimprove.tasks import (
    MLP_SPACE,
    SPLITS,
    DataSplits,
    Split,
    SupervisedTask,
    build_mlp,
    register_task,
)

__all__ = [
    "FAMILY_BUCKETS",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "GAIN_MODEL_NAME",
    "GAIN_TASK_NAME",
    "MIN_EXPERIMENTS",
    "MIN_REWARD_SECONDS",
    "MODEL_OBJECTIVES",
    "ExperimentFacts",
    "FeatureEncoding",
    "GainPredictionTask",
    "GainPredictor",
    "compare_with_bandit",
    "encode_features",
    "experiment_facts",
    "experiment_features",
    "family_bucket",
    "realised_gain",
    "register_gain_model",
    "time_split_sizes",
]

logger = logging.getLogger(__name__)

#: Objectives that measure the model itself rather than its predictions on data.
MODEL_OBJECTIVES = frozenset(EFFICIENCY_OBJECTIVES)
#: Buckets of the hashed model-family one-hot.
FAMILY_BUCKETS = 8
#: Version of the feature encoding (rises whenever a column or transform changes).
FEATURE_VERSION = 1
#: Fewest finished experiments the gain model is built from (18 train / 6 validation / 6 test).
MIN_EXPERIMENTS = 30
#: Name of the registered gain model, and of its task.
GAIN_MODEL_NAME = "gain_predictor"
GAIN_TASK_NAME = "gain_prediction"
#: Must equal ``selfimprove.loop.system.MIN_REWARD_SECONDS`` (the bandit reward's floor on seconds);
#: repeated here because the system is a higher layer.
MIN_REWARD_SECONDS = 0.5
#: Caps of the raw numeric features before their fixed transforms.
MAX_GAP = 100.0

FEATURE_NAMES: tuple[str, ...] = (
    *(f"strategy={s}" for s in STRATEGIES),
    *(f"kind={k}" for k in KINDS),
    *(f"family_bucket={i}" for i in range(FAMILY_BUCKETS)),
    "log10_parameters",
    "log1p_gap",
    "gap_known",
    "log10_epochs",
    "model_level_objective",
)

_FINISHED = (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)


# ---------------------------------------------------------------------- facts and features
@dataclass(frozen=True)
class ExperimentFacts:
    """What the ledger says about one finished experiment, before encoding.

    Attributes:
        id: Experiment id (creation order).
        model: Model name.
        family: The model's task family.
        strategy: Strategy name.
        kind: Planned task kind (see the module docstring for how it is found).
        kind_recorded: Whether ``kind`` came from a recorded system task (else the strategy's
            family).
        objective: The targeted objective (``""`` when none was recorded).
        parameters: Incumbent parameter count (NaN when unknown).
        gap: Incumbent's relative shortfall from the target (NaN when unknown).
        epochs: Budget epochs (NaN when not recorded).
        seconds: Compute seconds spent (``compute.seconds``, else ``durations.strategy_s``).
        promoted: Whether the candidate was promoted.
        failed: Whether the experiment failed.
        gain: Realised gain (relative improvement if promoted, else 0).
    """

    id: int
    model: str
    family: str
    strategy: str
    kind: str | None
    kind_recorded: bool
    objective: str
    parameters: float
    gap: float
    epochs: float
    seconds: float
    promoted: bool
    failed: bool
    gain: float

    @property
    def model_level(self) -> bool:
        """Whether the targeted objective is a property of the model (latency, size)."""
        return self.objective in MODEL_OBJECTIVES


def realised_gain(experiment: ExperimentRecord) -> float:
    """The realised gain of an experiment: its relative improvement if promoted, else 0.

    Args:
        experiment: A stored experiment.

    Returns:
        ``statistics["relative_improvement"]`` for a promotion (0 when not finite), else 0.
    """
    if experiment.decision is not Decision.PROMOTE:
        return 0.0
    rel = experiment.statistics.get("relative_improvement")
    return float(rel) if isinstance(rel, (int, float)) and math.isfinite(rel) else 0.0


def _relative_gap(before: float, target: float, direction: str) -> float:
    """Direction-aware relative shortfall of ``before`` from ``target`` (0 when met)."""
    shortfall = (target - before) if direction == "maximize" else (before - target)
    if shortfall <= 0:
        return 0.0
    return shortfall / abs(target) if target != 0 else math.inf


def _parameters(version: VersionRecord | None) -> float:
    if version is None:
        return math.nan
    p = version.metrics.get("parameters")
    if isinstance(p, (int, float)) and math.isfinite(p) and p > 0:
        return float(p)
    return version.size_bytes / 4.0 if version.size_bytes > 0 else math.nan


def _before(exp: ExperimentRecord, version: VersionRecord | None) -> float:
    value = exp.statistics.get("before")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if version is not None and exp.objective:
        for key in (f"validation_{exp.objective}", exp.objective):
            v = version.metrics.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                return float(v)
    return math.nan


def _recorded_kinds(store: Store) -> dict[tuple[int, str, str], str]:
    """(cycle, model name, strategy) -> the kind the system planned, from cycle metrics."""
    out: dict[tuple[int, str, str], str] = {}
    for row in store.list_cycle_metrics():
        extra = row.get("extra") or {}
        for task in extra.get("tasks", []) if isinstance(extra, dict) else []:
            try:
                key = (int(row["iteration"]), str(task["model_id"]), str(task["strategy"]))
                out[key] = str(task["kind"])
            except (KeyError, TypeError, ValueError):
                continue  # a row written by another version: skip what cannot be read
    return out


def experiment_facts(
    store: Store, experiments: Sequence[ExperimentRecord] | None = None
) -> list[ExperimentFacts]:
    """The facts of every finished model experiment, oldest first.

    Args:
        store: The ledger (read only).
        experiments: Every experiment of the ledger, oldest first, when already read (the
            system reads them once a cycle for all its meta-learning); default: read them.

    Returns:
        One :class:`ExperimentFacts` per completed or failed experiment that names a model.
    """
    models = {m.id: m for m in store.list_models()}
    caps = {c.id: c for c in store.list_capabilities()}
    caps_by_objective = {(c.model_id, c.objective): c for c in caps.values()}
    kinds = _recorded_kinds(store)
    if experiments is None:
        experiments = store.list_experiments()
    # Every incumbent version the experiments name, read at once.
    versions = store.versions_by_ids(
        e.incumbent_version_id for e in experiments if e.incumbent_version_id is not None
    )
    out: list[ExperimentFacts] = []
    for exp in experiments:
        if exp.status not in _FINISHED or exp.model_id is None or exp.model_id not in models:
            continue
        model = models[exp.model_id]
        version = None
        if exp.incumbent_version_id is not None:
            if exp.incumbent_version_id not in versions:  # gone: raises NotFoundError
                versions[exp.incumbent_version_id] = store.version_by_id(exp.incumbent_version_id)
            version = versions[exp.incumbent_version_id]
        cap = caps.get(exp.capability_id) if exp.capability_id is not None else None
        cap = cap or caps_by_objective.get((exp.model_id, exp.objective))
        before = _before(exp, version)
        gap = math.nan
        if cap is not None and cap.target is not None and math.isfinite(before):
            gap = _relative_gap(before, float(cap.target), cap.direction)
        recorded = kinds.get((exp.cycle or 0, model.name, exp.strategy))
        fallback = STRATEGIES[exp.strategy].family if exp.strategy in STRATEGIES else None
        budget = exp.params.get("budget") if isinstance(exp.params, dict) else None
        epochs = budget.get("epochs") if isinstance(budget, dict) else None
        seconds = exp.compute.get("seconds") or exp.durations.get("strategy_s") or 0.0
        out.append(
            ExperimentFacts(
                id=exp.id,
                model=model.name,
                family=model.family,
                strategy=exp.strategy,
                kind=recorded or fallback,
                kind_recorded=recorded is not None,
                objective=exp.objective or "",
                parameters=_parameters(version),
                gap=gap,
                epochs=float(epochs) if isinstance(epochs, (int, float)) else math.nan,
                seconds=float(seconds),
                promoted=exp.decision is Decision.PROMOTE,
                failed=exp.status is ExperimentStatus.FAILED,
                gain=realised_gain(exp),
            )
        )
    return out


def family_bucket(family: str) -> int:
    """The hashed bucket of a model family (stable across processes and machines)."""
    return derive_seed("family", family) % FAMILY_BUCKETS


def encode_features(
    *,
    strategy: str,
    kind: str | None,
    family: str,
    parameters: float,
    gap: float,
    epochs: float,
    objective: str,
) -> np.ndarray:
    """One feature row (``FEATURE_NAMES`` order), with the fixed transforms of the module docs.

    The planner can call this before an experiment exists, with what it knows then.

    Args:
        strategy: Strategy name.
        kind: Task kind (``None``: unknown, all zeros).
        family: The model's task family.
        parameters: Incumbent parameter count (NaN: unknown, reads 0).
        gap: Relative shortfall from the target (NaN: unknown, ``gap_known`` = 0).
        epochs: Budget epochs (NaN: unknown, reads 0).
        objective: The targeted objective.

    Returns:
        A float32 vector of length ``len(FEATURE_NAMES)``.
    """
    row = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    if f"strategy={strategy}" in index:
        row[index[f"strategy={strategy}"]] = 1.0
    if kind is not None and f"kind={kind}" in index:
        row[index[f"kind={kind}"]] = 1.0
    row[index[f"family_bucket={family_bucket(family)}"]] = 1.0
    if math.isfinite(parameters) and parameters > 0:
        row[index["log10_parameters"]] = math.log10(max(parameters, 1.0)) / 6.0
    if not math.isnan(gap):
        row[index["log1p_gap"]] = math.log1p(min(max(gap, 0.0), MAX_GAP))
        row[index["gap_known"]] = 1.0
    if math.isfinite(epochs) and epochs >= 0:
        row[index["log10_epochs"]] = math.log10(1.0 + epochs) / 2.0
    row[index["model_level_objective"]] = 1.0 if objective in MODEL_OBJECTIVES else 0.0
    return row


def _encode(facts: ExperimentFacts) -> np.ndarray:
    return encode_features(
        strategy=facts.strategy,
        kind=facts.kind,
        family=facts.family,
        parameters=facts.parameters,
        gap=facts.gap,
        epochs=facts.epochs,
        objective=facts.objective,
    )


def experiment_features(
    store: Store, facts: Sequence[ExperimentFacts] | None = None
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The gain model's data: one row per finished experiment, oldest first.

    Args:
        store: The ledger (read only).
        facts: ``experiment_facts(store)`` when already computed.

    Returns:
        ``X`` (float32, ``(n, len(FEATURE_NAMES))``), ``y`` (float32, ``(n,)``: realised gains)
        and the experiment ids of the rows.
    """
    facts = experiment_facts(store) if facts is None else facts
    x = np.stack([_encode(f) for f in facts]) if facts else np.zeros((0, len(FEATURE_NAMES)))
    y = np.array([f.gain for f in facts], dtype=np.float32)
    return x.astype(np.float32), y, [f.id for f in facts]


def time_split_sizes(n: int) -> tuple[int, int, int]:
    """Sizes of the time-ordered train / validation / test splits of ``n`` rows (60/20/20).

    Args:
        n: Number of rows (at least 3).

    Returns:
        ``(n_train, n_validation, n_test)``, each at least 1, summing to ``n``.

    Raises:
        TaskError: Fewer than 3 rows.
    """
    if n < 3:
        raise TaskError(f"a time-ordered split needs at least 3 rows, but got {n}.")
    n_train = max(1, int(0.6 * n))
    n_val = max(1, int(0.2 * n))
    n_test = n - n_train - n_val
    if n_test < 1:
        n_train -= 1
        n_test = 1
    return n_train, n_val, n_test


# ---------------------------------------------------------------------- the task
@dataclass(frozen=True)
class FeatureEncoding:
    """How experiments become inputs: the column names and the encoding version."""

    names: tuple[str, ...] = FEATURE_NAMES
    version: int = FEATURE_VERSION
    family_buckets: int = FAMILY_BUCKETS

    def __post_init__(self) -> None:
        if len(self.names) != len(FEATURE_NAMES) or self.version != FEATURE_VERSION:
            raise ConfigError(
                f"feature encoding v{self.version} with {len(self.names)} columns does not match "
                f"this selfimprove (v{FEATURE_VERSION}, {len(FEATURE_NAMES)} columns); rebuild "
                "the gain model with register_gain_model."
            )

    @property
    def width(self) -> int:
        """Number of input features."""
        return len(self.names)


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
class GainPredictor:
    """A trained gain model and its feature encoding.

    Args:
        module: A module mapping ``(B, encoding.width)`` inputs to ``(B, 1)`` gains.
        encoding: The feature encoding the module was trained on.
        fit_through_id: Newest experiment id the module may have learnt from or been selected
            on (held-out evaluation starts after it).
    """

    def __init__(
        self, module: nn.Module, encoding: FeatureEncoding, *, fit_through_id: int
    ) -> None:
        self.module = module
        self.encoding = encoding
        self.fit_through_id = fit_through_id

    @classmethod
    def from_registry(
        cls, registry: Registry, name: str = GAIN_MODEL_NAME, version: int | None = None
    ) -> GainPredictor:
        """Load a version of the registered gain model (the incumbent by default).

        Args:
            registry: The registry holding the model (``improver.registry``).
            name: Model name.
            version: Version number (``None``: the incumbent).

        Returns:
            The predictor.

        Raises:
            TaskError: The model's task is not a :class:`GainPredictionTask` (call
                :func:`register_gain_model` in this process first).
        """
        loaded = registry.load(name, version)
        task = loaded.task
        if not isinstance(task, GainPredictionTask):
            raise TaskError(
                f"model {name!r} has task {loaded.model.task!r}, which is not a gain-prediction "
                "task in this process; call register_gain_model(improver, store, seed=...) first."
            )
        return cls(loaded.module, task.encoding, fit_through_id=task.fit_through_id)

    def predict_many(self, features: np.ndarray) -> np.ndarray:
        """Predicted gains of a batch of rows.

        Args:
            features: ``(n, encoding.width)`` rows from :func:`encode_features`.

        Returns:
            ``(n,)`` float64 predicted gains, clipped to [0, 1] (the range of a realised gain).

        Raises:
            ConfigError: Rows of the wrong width.
        """
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.encoding.width:
            raise ConfigError(
                f"gain features must have {self.encoding.width} columns (FEATURE_NAMES), but got "
                f"shape {tuple(x.shape)}; build rows with encode_features."
            )
        self.module.eval()
        with torch.no_grad():
            out = self.module(torch.from_numpy(x))  # (n, F) -> (n, 1)
        # A realised gain lies in [0, 1] by construction (0 unless promoted; a relative error
        # reduction cannot exceed 1), so a prediction outside it is clipped.
        return out.reshape(-1).double().clamp(0.0, 1.0).numpy()

    def predict(self, features: Sequence[float] | np.ndarray) -> float:
        """The predicted gain of one experiment.

        Args:
            features: One row from :func:`encode_features`.

        Returns:
            The predicted realised gain.
        """
        return float(self.predict_many(np.asarray(features, dtype=np.float32))[0])


# ---------------------------------------------------------------------- versus the bandit
def _reward_seconds(facts: ExperimentFacts) -> float:
    return max(facts.seconds, MIN_REWARD_SECONDS)


def compare_with_bandit(
    store: Store,
    predictor: GainPredictor,
    bandit: StrategyBandit,
    *,
    alpha: float | None = None,
    facts: Sequence[ExperimentFacts] | None = None,
) -> dict[str, Any]:
    """Held-out error of the gain model against the bandit's, in the unit of gain.

    Held out: every finished experiment newer than ``predictor.fit_through_id``. The bandit is
    replayed, with ``bandit``'s prior, on the experiments up to that id (context = (kind, model
    family), reward = gain / max(seconds, 0.5), as the system feeds it); its estimate of a
    held-out experiment is its posterior mean reward for that (context, strategy) — the prior
    mean when never tried — times the experiment's max(seconds, 0.5).

    ``p_value`` is the judge's one-sided paired bootstrap
    (:func:`selfimprove.measure.judge.paired_test`) that the gain model's absolute errors are
    smaller than the bandit's on the same experiments.

    Args:
        store: The ledger.
        predictor: The gain model.
        bandit: Supplies the prior (mean, scale, strength) and seed of the replayed bandit.
        alpha: When given, the gain model must also be significantly better (``p_value <
            alpha``) to decide; ``None`` (default): a strictly smaller MAE suffices.
        facts: ``experiment_facts(store)`` when already computed (default: read now).

    Returns:
        ``n``, ``gain_model_mae``, ``bandit_mae`` (NaN when ``n`` is 0), ``p_value``
        (``None`` when ``n`` is 0), ``decides`` (``"gain_model"`` only when its MAE is strictly
        smaller, and significantly so when ``alpha`` is given; else ``"bandit"``), ``reason``,
        ``gain_model_wins`` (held-out experiments where its error is smaller),
        ``held_out_ids``, ``bandit_trained_on`` and ``conversion``.

    Raises:
        ConfigError: ``alpha`` outside (0, 1).
    """
    if alpha is not None and not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1) or None, but got {alpha=}.")
    facts = experiment_facts(store) if facts is None else facts
    seen = [f for f in facts if f.id <= predictor.fit_through_id]
    held = [f for f in facts if f.id > predictor.fit_through_id]
    replay = StrategyBandit(
        bandit.seed,
        prior_mean=bandit.prior_mean,
        prior_scale=bandit.prior_scale,
        prior_strength=bandit.prior_strength,
    )
    for f in seen:
        replay.update((str(f.kind), f.family), f.strategy, f.gain / _reward_seconds(f))
    result: dict[str, Any] = {
        "n": len(held),
        "held_out_ids": [f.id for f in held],
        "bandit_trained_on": len(seen),
        "conversion": "bandit gain = posterior mean reward x max(seconds, 0.5)",
    }
    if not held:
        result.update(
            gain_model_mae=math.nan,
            bandit_mae=math.nan,
            p_value=None,
            gain_model_wins=0,
            decides="bandit",
            reason=(
                f"no finished experiment is newer than #{predictor.fit_through_id}: nothing "
                "held out to compare on, so the bandit keeps deciding"
            ),
        )
        return result
    truth = np.array([f.gain for f in held])
    predicted = predictor.predict_many(np.stack([_encode(f) for f in held]))
    bandit_gain = np.array(
        [
            replay.estimates((str(f.kind), f.family))
            .get(f.strategy, {})
            .get("mean", replay.prior_mean)
            * _reward_seconds(f)
            for f in held
        ]
    )
    err_model, err_bandit = np.abs(predicted - truth), np.abs(bandit_gain - truth)
    mae_model, mae_bandit = float(err_model.mean()), float(err_bandit.mean())
    error = Objective("absolute_error", Direction.MINIMIZE)
    _, p = paired_test(error, err_bandit, err_model, seed=derive_seed("gain_vs_bandit"))
    better = mae_model < mae_bandit
    decides = "gain_model" if better and (alpha is None or p < alpha) else "bandit"
    relation = "<" if better else ("=" if mae_model == mae_bandit else ">")
    shown = (
        f"on {len(held)} held-out experiments the gain model's MAE {mae_model:.4g} {relation} "
        f"the bandit's {mae_bandit:.4g} (paired bootstrap p={p:.3g})"
    )
    if decides == "gain_model":
        reason = f"{shown}: the gain model is strictly better"
    elif not better:
        reason = f"{shown}: the gain model is not strictly better, so the bandit keeps deciding"
    else:
        reason = (
            f"{shown}: better, but not significantly at α={alpha}, so the bandit keeps deciding"
        )
    result.update(
        gain_model_mae=mae_model,
        bandit_mae=mae_bandit,
        p_value=p,
        gain_model_wins=int((err_model < err_bandit).sum()),
        decides=decides,
        reason=reason,
    )
    logger.info("gain model vs bandit: %s", reason)
    return result
