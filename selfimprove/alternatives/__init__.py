"""Neural alternatives to algorithmic operations, with automatic switching between the two.

Seed 000's "dynamic switching between neural and algorithmic methods", made checkable:

- an :class:`Operation` is an algorithm (the ground truth) and a seeded sampler of its inputs;
  :func:`operation_task` labels generated inputs with the algorithm and returns a regression
  task, so the network that imitates it is an ordinary model of the improvement loop;
- a :class:`PerformanceTracker` measures the network against the algorithm (relative error and
  single-threaded latency) and routes each call: to the network only when it is within the
  operation's error budget and faster at the call's batch size; shadow checks catch drift and
  fall back to the algorithm, saying why;
- a :class:`NeuralAlternative` is the callable that does the routing, served by the registered
  model's incumbent; :func:`register_alternative` trains and registers the first one.

Built-in operations (hormone response, trigger activation, memory consolidation) live in
:mod:`selfimprove.alternatives.builtin`.

Example::

    alt = register_alternative(improver, op, seed=0)
    y = alt(x)                     # (N, d_in) -> (N, d_out), algorithm or network
    improver.run(1, models=[op.name])
    alt.refresh()                  # serve (and re-validate) a promoted version
    alt.summary()["reason"]
"""

from __future__ import annotations

from selfimprove.alternatives._neural import (
    REFERENCE_SIZE,
    NeuralAlternative,
    register_alternative,
)
from selfimprove.alternatives._operation import (
    ALTERNATIVE_FAMILY,
    Operation,
    operation_data,
    operation_task,
    output_scale,
    relative_error,
)
from selfimprove.alternatives._tracker import (
    LatencyComparison,
    PerformanceTracker,
    Route,
    RouteDecision,
    TrackerState,
    Validation,
)

__all__ = [
    "ALTERNATIVE_FAMILY",
    "REFERENCE_SIZE",
    "LatencyComparison",
    "NeuralAlternative",
    "Operation",
    "PerformanceTracker",
    "Route",
    "RouteDecision",
    "TrackerState",
    "Validation",
    "operation_data",
    "operation_task",
    "output_scale",
    "register_alternative",
    "relative_error",
]
