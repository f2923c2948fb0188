"""selfimprove: keep a population of PyTorch models getting better on their own, with proof.

Every gain is measured on held-out validation data, judged with a paired significance test,
and reported beside an untouched test split. Start with :class:`SelfImprover`.
"""

from __future__ import annotations

from selfimprove.config import JudgeConfig, SelfImprovementConfig
from selfimprove.errors import (
    BudgetExceededError,
    CheckpointError,
    ConfigError,
    DivergedError,
    NotFoundError,
    SchemaVersionError,
    SelfImproveError,
    StoreError,
    StrategyError,
    TaskError,
)
from selfimprove.evaluation import Evaluation, Evaluator
from selfimprove.improver import SelfImprover
from selfimprove.judge import Judge, Judgement
from selfimprove.loop import ExperimentOutcome, ImprovementLoop
from selfimprove.objectives import Direction, Objective
from selfimprove.registry import LoadedModel, Registry
from selfimprove.store import Decision, ExperimentStatus, Store, VersionStatus
from selfimprove.strategies import STRATEGIES, Budget, Candidate, Strategy, StrategyContext
from selfimprove.tasks import (
    BUILTIN_TASKS,
    DataSplits,
    Split,
    SupervisedTask,
    Task,
    build_mlp,
    register_task,
    resolve_task,
)
from selfimprove.training import TrainConfig, TrainResult, train_

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_TASKS",
    "STRATEGIES",
    "Budget",
    "BudgetExceededError",
    "Candidate",
    "CheckpointError",
    "ConfigError",
    "DataSplits",
    "Decision",
    "Direction",
    "DivergedError",
    "Evaluation",
    "Evaluator",
    "ExperimentOutcome",
    "ExperimentStatus",
    "ImprovementLoop",
    "Judge",
    "JudgeConfig",
    "Judgement",
    "LoadedModel",
    "NotFoundError",
    "Objective",
    "Registry",
    "SchemaVersionError",
    "SelfImproveError",
    "SelfImprovementConfig",
    "SelfImprover",
    "Split",
    "Store",
    "StoreError",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "SupervisedTask",
    "Task",
    "TaskError",
    "TrainConfig",
    "TrainResult",
    "VersionStatus",
    "__version__",
    "build_mlp",
    "register_task",
    "resolve_task",
    "train_",
]
