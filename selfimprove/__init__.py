"""selfimprove: keep a population of PyTorch models getting better on their own, with proof.

Every gain is measured on held-out validation data, judged with a paired significance test,
and reported beside an untouched test split.

The front door
--------------
- :class:`SelfImprover` — a home folder's models and the loop that improves them. ``run()``
  runs the *planned* loop (bandit, hormones, triggers, every applicable strategy), the same
  loop as ``selfimprove run``, for your own models as for the built-in ones.

The seed documents' classes, as thin facades over it:

- :class:`SelfImprovingNeuralSystem` (seed 000) — the planned cycle with its async lifecycle;
  :class:`SelfImprovementMetrics` is one cycle's figures, :class:`ModelImprovementTask` one
  planned task; :class:`HormoneSystemController`, :class:`GeneticTriggerSystem` and
  :class:`BrainStateAggregator` are the brain signals that steer where it looks.
- :class:`SelfImprovementIntegration` (seed 000/001) — the system's async API as plain data,
  and its MCP tools.
- :class:`SelfImprovementEngine` (seed 002) — capabilities, weaknesses, experiments, code
  improvements with approval and rollback, meta-learnings, self-assessment, over the same store.
- :class:`AdaptivePlasticitySystem` (seed 004) — attention-head prune, measure, grow, learn.

Names are imported on first use, so ``import selfimprove`` stays cheap (the command line
answers ``--help`` without loading every layer).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (one home each; see docs/architecture.md).
_HOMES: dict[str, str] = {
    # core
    "SelfImprovementConfig": "selfimprove.config",
    "JudgeConfig": "selfimprove.config",
    "SelfImproveError": "selfimprove.errors",
    "ConfigError": "selfimprove.errors",
    "StoreError": "selfimprove.errors",
    "SchemaVersionError": "selfimprove.errors",
    "NotFoundError": "selfimprove.errors",
    "CheckpointError": "selfimprove.errors",
    "TaskError": "selfimprove.errors",
    "StrategyError": "selfimprove.errors",
    "DivergedError": "selfimprove.errors",
    "BudgetExceededError": "selfimprove.errors",
    "Direction": "selfimprove.objectives",
    "Objective": "selfimprove.objectives",
    # store, tasks, registry
    "Store": "selfimprove.store",
    "Decision": "selfimprove.store",
    "ExperimentStatus": "selfimprove.store",
    "VersionStatus": "selfimprove.store",
    "BUILTIN_TASKS": "selfimprove.tasks",
    "DataSplits": "selfimprove.tasks",
    "Split": "selfimprove.tasks",
    "SupervisedTask": "selfimprove.tasks",
    "Task": "selfimprove.tasks",
    "build_mlp": "selfimprove.tasks",
    "register_task": "selfimprove.tasks",
    "resolve_task": "selfimprove.tasks",
    "LoadedModel": "selfimprove.registry",
    "Registry": "selfimprove.registry",
    # measure, strategies
    "TrainConfig": "selfimprove.measure.training",
    "TrainResult": "selfimprove.measure.training",
    "train_": "selfimprove.measure.training",
    "Evaluation": "selfimprove.measure.evaluation",
    "Evaluator": "selfimprove.measure.evaluation",
    "Judge": "selfimprove.measure.judge",
    "Judgement": "selfimprove.measure.judge",
    "STRATEGIES": "selfimprove.strategies",
    "Budget": "selfimprove.strategies",
    "Candidate": "selfimprove.strategies",
    "Strategy": "selfimprove.strategies",
    "StrategyContext": "selfimprove.strategies",
    # brain
    "HormoneSystemController": "selfimprove.brain.hormones",
    "GeneticTriggerSystem": "selfimprove.brain.triggers",
    "BrainStateAggregator": "selfimprove.brain.state",
    "ModelImprovementTask": "selfimprove.brain.planning",
    # engine, loop, systems, surfaces
    "SelfImprovementEngine": "selfimprove.engine",
    "ExperimentOutcome": "selfimprove.loop.experiment",
    "ImprovementLoop": "selfimprove.loop.experiment",
    "SelfImprover": "selfimprove.loop.improver",
    "SelfImprovingNeuralSystem": "selfimprove.loop.system",
    "SelfImprovementMetrics": "selfimprove.loop.learning",
    "ImprovementCycle": "selfimprove.loop.cycle",
    "AdaptivePlasticitySystem": "selfimprove.plasticity",
    "SelfImprovementIntegration": "selfimprove.surfaces.integration",
}

__all__ = [
    "BUILTIN_TASKS",
    "STRATEGIES",
    "AdaptivePlasticitySystem",
    "BrainStateAggregator",
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
    "GeneticTriggerSystem",
    "HormoneSystemController",
    "ImprovementCycle",
    "ImprovementLoop",
    "Judge",
    "JudgeConfig",
    "Judgement",
    "LoadedModel",
    "ModelImprovementTask",
    "NotFoundError",
    "Objective",
    "Registry",
    "SchemaVersionError",
    "SelfImproveError",
    "SelfImprovementConfig",
    "SelfImprovementEngine",
    "SelfImprovementIntegration",
    "SelfImprovementMetrics",
    "SelfImprover",
    "SelfImprovingNeuralSystem",
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


def __getattr__(name: str) -> Any:
    """Import a public name from its home on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'selfimprove' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from selfimprove.brain.hormones import HormoneSystemController
    from selfimprove.brain.planning import ModelImprovementTask
    from selfimprove.brain.state import BrainStateAggregator
    from selfimprove.brain.triggers import GeneticTriggerSystem
    from selfimprove.config import JudgeConfig, SelfImprovementConfig
    from selfimprove.engine import SelfImprovementEngine
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
    from selfimprove.loop.cycle import ImprovementCycle
    from selfimprove.loop.experiment import ExperimentOutcome, ImprovementLoop
    from selfimprove.loop.improver import SelfImprover
    from selfimprove.loop.learning import SelfImprovementMetrics
    from selfimprove.loop.system import SelfImprovingNeuralSystem
    from selfimprove.measure.evaluation import Evaluation, Evaluator
    from selfimprove.measure.judge import Judge, Judgement
    from selfimprove.measure.training import TrainConfig, TrainResult, train_
    from selfimprove.objectives import Direction, Objective
    from selfimprove.plasticity import AdaptivePlasticitySystem
    from selfimprove.registry import LoadedModel, Registry
    from selfimprove.store import Decision, ExperimentStatus, Store, VersionStatus
    from selfimprove.strategies import STRATEGIES, Budget, Candidate, Strategy, StrategyContext
    from selfimprove.surfaces.integration import SelfImprovementIntegration
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
