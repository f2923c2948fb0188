"""The improvement loop: one experiment, the planned cycle, executors and the front door.

- :mod:`.experiment`: :class:`ImprovementLoop` — one judged experiment (copy, strategy under a
  budget, evaluate side by side, judge, save, promote or reject), observation, crash recovery;
- :mod:`.executors`: where experiments run (a local pool; results in task order);
- :mod:`.improver`: :class:`SelfImprover`, a home folder's store, registry and loop — the
  Python front door;
- :mod:`.system`: :class:`SelfImprovingNeuralSystem`, seed 000's planned cycle (hormones,
  triggers, bandit, gain model) and its async lifecycle.
"""

from __future__ import annotations

from selfimprove.loop.executors import EXECUTORS, Executor, LocalExecutor, get_executor
from selfimprove.loop.experiment import ExperimentOutcome, ImprovementLoop, ProgressCallback
from selfimprove.loop.improver import SelfImprover
from selfimprove.loop.system import (
    SelfImprovementMetrics,
    SelfImprovingNeuralSystem,
    health_report,
)

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExperimentOutcome",
    "ImprovementLoop",
    "LocalExecutor",
    "ProgressCallback",
    "SelfImprovementMetrics",
    "SelfImprover",
    "SelfImprovingNeuralSystem",
    "get_executor",
    "health_report",
]
