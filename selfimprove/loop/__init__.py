"""The improvement loop: one experiment, the planned cycle, executors and the front door.

- :mod:`.experiment`: :class:`ImprovementLoop` — one judged experiment (copy, strategy under a
  budget, evaluate side by side, judge, save, promote or reject), observation, crash recovery;
- :mod:`.cycle`: :class:`ImprovementCycle` — the planned cycle: observe, plan (weaknesses,
  bandit, hormones, triggers, gain model), execute through an executor, learn;
- :mod:`.learning`: what a cycle learns (:class:`CycleLearner`, ``SelfImprovementMetrics``);
- :mod:`.executors`: where experiments run (a local pool; results in task order);
- :mod:`.health`: the health report from measured records;
- :mod:`.improver`: :class:`SelfImprover` — a home folder's store, registry and the planned
  cycle: the Python front door;
- :mod:`.system`: :class:`SelfImprovingNeuralSystem` — seed 000's facade over the same cycle,
  with its async lifecycle.
"""

from __future__ import annotations

from selfimprove.loop.cycle import ImprovementCycle
from selfimprove.loop.executors import EXECUTORS, Executor, LocalExecutor, get_executor
from selfimprove.loop.experiment import ExperimentOutcome, ImprovementLoop, ProgressCallback
from selfimprove.loop.health import health_report
from selfimprove.loop.improver import SelfImprover
from selfimprove.loop.learning import CycleLearner, SelfImprovementMetrics
from selfimprove.loop.system import SelfImprovingNeuralSystem

__all__ = [
    "EXECUTORS",
    "CycleLearner",
    "Executor",
    "ExperimentOutcome",
    "ImprovementCycle",
    "ImprovementLoop",
    "LocalExecutor",
    "ProgressCallback",
    "SelfImprovementMetrics",
    "SelfImprover",
    "SelfImprovingNeuralSystem",
    "get_executor",
    "health_report",
]
