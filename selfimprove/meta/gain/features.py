"""Facts of past experiments and their fixed feature encoding (see :mod:`selfimprove.meta.gain`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from selfimprove.brain.planning import KINDS
from selfimprove.errors import ConfigError, TaskError
from selfimprove.objectives import EFFICIENCY_OBJECTIVES
from selfimprove.seeding import derive_seed
from selfimprove.store import (
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    Store,
    VersionRecord,
)
from selfimprove.strategies import STRATEGIES

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
#: A reward is gain per this many epochs spent: epochs, not seconds, so that the same seed makes
#: the same decisions on a loaded machine (seconds follow the load; epochs follow the seed).
REWARD_EPOCHS = 10.0
#: Epochs below this count as this much when gain becomes reward: an experiment that trains for
#: no epoch at all (quantize, prune without fine-tuning) is not infinitely good.
MIN_REWARD_EPOCHS = 5.0


def reward_cost(epochs: float) -> float:
    """What an experiment that spent ``epochs`` costs, in reward units: ``max(epochs,
    MIN_REWARD_EPOCHS) / REWARD_EPOCHS`` (a reward is gain divided by it). Not finite or
    negative counts as the floor."""
    spent = epochs if math.isfinite(epochs) and epochs > 0 else 0.0
    return max(spent, MIN_REWARD_EPOCHS) / REWARD_EPOCHS


#: Caps of the raw numeric features before their fixed transforms.
MAX_GAP = 100.0

#: The strategies with a one-hot column in encoding version 1 (frozen: a strategy added later,
#: such as ``grow``, encodes as all zeros, so the checkpoints of a gain model keep fitting).
FEATURE_STRATEGIES = ("train", "retrain", "tune", "evolve", "quantize", "prune", "distill", "heads")

FEATURE_NAMES: tuple[str, ...] = (
    *(f"strategy={s}" for s in FEATURE_STRATEGIES),
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
        epochs_spent: Training epochs spent (``compute.epochs``; 0 when none was recorded).
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
    epochs_spent: float
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


def _recorded_kinds(store: Store, cycles: Collection[int]) -> dict[tuple[int, str, str], str]:
    """(cycle, model name, strategy) -> the kind the system planned, from the cycle metrics of
    ``cycles``."""
    out: dict[tuple[int, str, str], str] = {}
    for row in store.list_cycle_metrics(iterations=cycles):
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
    """The facts of the finished model experiments among ``experiments``, oldest first.

    Reads only the models, capabilities, cycle metrics and versions those experiments name, so
    the facts of a cycle's new experiments cost what they are, not what the ledger is.

    Args:
        store: The ledger (read only).
        experiments: The experiments, oldest first (default: every experiment of the ledger).

    Returns:
        One :class:`ExperimentFacts` per completed or failed experiment that names a model.
    """
    if experiments is None:
        experiments = store.list_experiments()
    wanted = [e for e in experiments if e.status in _FINISHED and e.model_id is not None]
    model_ids = {e.model_id for e in wanted if e.model_id is not None}
    models = {m.id: m for m in store.list_models(ids=model_ids)} if model_ids else {}
    caps = {c.id: c for c in store.list_capabilities(model_ids=model_ids)} if model_ids else {}
    caps_by_objective = {(c.model_id, c.objective): c for c in caps.values()}
    cycles = {e.cycle for e in wanted if e.cycle is not None}
    kinds = _recorded_kinds(store, cycles) if cycles else {}
    experiments = wanted
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
                epochs_spent=float(exp.compute.get("epochs") or 0.0),
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


def encode_facts(facts: ExperimentFacts) -> np.ndarray:
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
    x = np.stack([encode_facts(f) for f in facts]) if facts else np.zeros((0, len(FEATURE_NAMES)))
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
