"""`PerformanceTracker`: when may a neural alternative stand in for its algorithm?

The routing rule (seed 000's "dynamic switching between neural and algorithmic methods"):

1. **Validation** measures the neural alternative against the algorithm on reference inputs:
   its relative error (mean squared error against the algorithm's outputs / the variance of
   those outputs) and the latency of both, single-threaded, warmed up, interleaved repeat by
   repeat (alternating which goes first), as medians at a few batch sizes.
2. :meth:`PerformanceTracker.choose` routes a call of batch size ``n`` to the neural
   alternative only when the last validation put it **within the error budget** and it was
   **faster at the measured batch size nearest to** ``n`` (nearest in log2); otherwise to the
   algorithm. Before any validation every call goes to the algorithm.
3. **Shadow checks**: every ``shadow_every``-th call routed to the neural alternative also runs
   the algorithm (a deterministic counter, not a draw) and records the relative error of that
   batch. The **drift rule**: once the rolling window of the last ``window`` shadow checks holds
   at least ``min_shadows`` of them, and its relative error (pooled over every example in the
   window) exceeds the budget, the tracker falls back to the algorithm and records why. A
   non-finite neural output falls back at once. Only a new validation (a re-trained or promoted
   model, or the same one on the inputs of today) may re-enable the neural path.

Every decision comes with its reason, and :meth:`PerformanceTracker.summary` reports calls per
route, served and validated latencies, shadow-error statistics, the state and its reason.
State changes under one lock, so several threads may share a tracker.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfimprove.alternatives._operation import relative_error
from selfimprove.errors import ConfigError
from selfimprove.nn.runtime import single_thread

__all__ = [
    "LatencyComparison",
    "PerformanceTracker",
    "Route",
    "RouteDecision",
    "TrackerState",
    "Validation",
]

logger = logging.getLogger(__name__)

ArrayFn = Callable[[np.ndarray], np.ndarray]


class Route(str, enum.Enum):
    """Which implementation serves a call."""

    NEURAL = "neural"
    ALGORITHM = "algorithm"


class TrackerState(str, enum.Enum):
    """Whether the neural path is open.

    ``UNVALIDATED``: never validated (algorithm only). ``ENABLED``: within budget at the last
    validation (neural where it is faster). ``OVER_BUDGET``: the last validation found it too
    inaccurate. ``FALLBACK``: shadow checks drifted over budget, or an output was not finite,
    since the last validation.
    """

    UNVALIDATED = "unvalidated"
    ENABLED = "enabled"
    OVER_BUDGET = "over_budget"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class RouteDecision:
    """Where one call goes and why.

    Attributes:
        route: The implementation that serves the call.
        reason: Why, in one line.
        shadow: Whether the call also runs the algorithm to check the neural output.
        batch_size: The call's batch size.
    """

    route: Route
    reason: str
    shadow: bool = False
    batch_size: int = 1


@dataclass(frozen=True)
class LatencyComparison:
    """Median single-threaded latency of both implementations at one batch size.

    Attributes:
        batch_size: Rows per call.
        algorithm_ms: Median milliseconds per call of the algorithm.
        neural_ms: Median milliseconds per call of the neural alternative (tensor conversion
            included: what a caller pays).
        repeats: Timed calls of each.
    """

    batch_size: int
    algorithm_ms: float
    neural_ms: float
    repeats: int

    @property
    def neural_faster(self) -> bool:
        """Whether the neural median is strictly below the algorithm's."""
        return self.neural_ms < self.algorithm_ms

    @property
    def speedup(self) -> float:
        """Algorithm time over neural time (> 1: the neural alternative is faster)."""
        return self.algorithm_ms / self.neural_ms if self.neural_ms > 0 else math.inf


@dataclass(frozen=True)
class Validation:
    """One comparison of the neural alternative with its algorithm.

    Attributes:
        error: Relative error of the neural outputs on the reference inputs.
        error_budget: The budget it was held to.
        n_examples: Reference inputs compared.
        latencies: One comparison per measured batch size, ascending.
    """

    error: float
    error_budget: float
    n_examples: int
    latencies: tuple[LatencyComparison, ...]

    def __post_init__(self) -> None:
        if not self.latencies:
            raise ConfigError(
                "a validation needs at least one latency comparison; measure one with "
                "PerformanceTracker.measure()."
            )

    @property
    def within_budget(self) -> bool:
        """Whether the error is finite and at most the budget."""
        return math.isfinite(self.error) and self.error <= self.error_budget

    def latency_at(self, batch_size: int) -> LatencyComparison:
        """The comparison at the measured batch size nearest to ``batch_size`` (in log2; ties
        go to the smaller size)."""
        target = math.log2(max(batch_size, 1))
        return min(
            self.latencies, key=lambda c: (abs(math.log2(c.batch_size) - target), c.batch_size)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports."""
        return {
            "error": self.error,
            "error_budget": self.error_budget,
            "within_budget": self.within_budget,
            "n_examples": self.n_examples,
            "latency": {
                str(c.batch_size): {
                    "algorithm_ms": c.algorithm_ms,
                    "neural_ms": c.neural_ms,
                    "speedup": c.speedup,
                    "repeats": c.repeats,
                }
                for c in self.latencies
            },
        }


def _median_ms(values: deque[float]) -> float | None:
    return float(np.median(np.asarray(values))) if values else None


class PerformanceTracker:
    """Compares an algorithm with its neural alternative and routes each call.

    Args:
        name: The operation's name (for reports and logs).
        error_budget: Largest relative error (mean squared error / output variance) allowed.
        scale: Variance of the algorithm's outputs, the denominator of every relative error.
        shadow_every: Every k-th neural call is also run by the algorithm (k >= 1).
        window: Shadow checks kept in the rolling window of the drift rule.
        min_shadows: Shadow checks needed in the window before the drift rule may fire.
        batch_sizes: Batch sizes timed at validation (each >= 1).
        repeats: Timed calls per implementation and batch size (>= 3).
        history: Served-call latencies kept per route for the report's medians.

    Raises:
        ConfigError: A setting is out of range.
    """

    def __init__(
        self,
        name: str,
        error_budget: float,
        scale: float,
        *,
        shadow_every: int = 10,
        window: int = 20,
        min_shadows: int = 5,
        batch_sizes: Sequence[int] = (1, 64),
        repeats: int = 15,
        history: int = 256,
    ) -> None:
        if not (math.isfinite(error_budget) and error_budget > 0):
            raise ConfigError(f"error_budget must be > 0, but got {error_budget=}.")
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(
                f"scale (the variance of the algorithm's outputs) must be > 0, but got {scale=}."
            )
        if shadow_every < 1:
            raise ConfigError(f"shadow_every must be >= 1 (1 = every call), got {shadow_every=}.")
        if window < 1 or not 1 <= min_shadows <= window:
            raise ConfigError(
                f"need window >= 1 and 1 <= min_shadows <= window, but got {window=}, "
                f"{min_shadows=}."
            )
        sizes = sorted({int(b) for b in batch_sizes})
        if not sizes or sizes[0] < 1:
            raise ConfigError(
                f"batch_sizes must hold at least one size >= 1, but got {list(batch_sizes)}."
            )
        if repeats < 3:
            raise ConfigError(f"repeats must be >= 3, but got {repeats=}.")
        if history < 1:
            raise ConfigError(f"history must be >= 1, but got {history=}.")
        self.name = name
        self.error_budget = float(error_budget)
        self.scale = float(scale)
        self.shadow_every = shadow_every
        self.window = window
        self.min_shadows = min_shadows
        self.batch_sizes = tuple(sizes)
        self.repeats = repeats
        self._lock = threading.RLock()
        self._state = TrackerState.UNVALIDATED
        self._reason = "not validated yet: the algorithm serves every call"
        self._validation: Validation | None = None
        self._validations = 0
        self._calls = {Route.NEURAL: 0, Route.ALGORITHM: 0}
        self._served_ms: dict[Route, deque[float]] = {r: deque(maxlen=history) for r in Route}
        # Each shadow check: (sum of squared errors, number of values compared).
        self._shadow_window: deque[tuple[float, int]] = deque(maxlen=window)
        self._shadow_errors: deque[float] = deque(maxlen=history)
        self._shadow_total = 0
        self._fallbacks = 0
        self._switches: deque[dict[str, Any]] = deque(maxlen=32)
        self._last_route: Route | None = None

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> TrackerState:
        """Whether the neural path is open (see :class:`TrackerState`)."""
        with self._lock:
            return self._state

    @property
    def reason(self) -> str:
        """Why the tracker is in its state."""
        with self._lock:
            return self._reason

    @property
    def validation(self) -> Validation | None:
        """The last validation (``None`` before the first)."""
        with self._lock:
            return self._validation

    def _set_state(self, state: TrackerState, reason: str) -> None:
        # Caller holds the lock.
        if state is not self._state:
            self._switches.append(
                {"at": time.time(), "from": self._state.value, "to": state.value, "reason": reason}
            )
            level = logging.WARNING if state is TrackerState.FALLBACK else logging.INFO
            logger.log(
                level, "%s: %s -> %s (%s)", self.name, self._state.value, state.value, reason
            )
        self._state, self._reason = state, reason

    # ------------------------------------------------------------------ validation
    def measure(self, algorithm: ArrayFn, neural: ArrayFn, inputs: np.ndarray) -> Validation:
        """Compare ``neural`` with ``algorithm`` on ``inputs``; changes no state.

        Args:
            algorithm: ``(N, d_in) -> (N, d_out)`` ground truth.
            neural: ``(N, d_in) -> (N, d_out)`` alternative.
            inputs: ``(N, d_in)`` reference inputs (rows are repeated for batch sizes > N).

        Returns:
            The relative error on ``inputs`` and the latency comparisons.

        Raises:
            ConfigError: ``inputs`` is not a non-empty 2-D batch.

        Note:
            Timing sets torch to one intra-op thread for the whole process while it runs;
            calls served meanwhile by other threads run single-threaded too.
        """
        inputs = np.asarray(inputs)
        if inputs.ndim != 2 or len(inputs) == 0:
            raise ConfigError(
                f"reference inputs must be a non-empty (N, d_in) batch, but got {inputs.shape}."
            )
        reference, predicted = algorithm(inputs), neural(inputs)
        error = self.relative_error(predicted, reference)
        comparisons = []
        with single_thread():
            for b in self.batch_sizes:
                xb = np.resize(inputs, (b, inputs.shape[1]))  # (b, d_in), rows repeated
                for _ in range(2):  # warm-up
                    algorithm(xb)
                    neural(xb)
                alg_ms: list[float] = []
                net_ms: list[float] = []
                for r in range(self.repeats):
                    # Alternate who goes first, so neither always runs on a warmer cache.
                    order = ((algorithm, alg_ms), (neural, net_ms))
                    for fn, out in order if r % 2 == 0 else order[::-1]:
                        t0 = time.perf_counter()
                        fn(xb)
                        out.append((time.perf_counter() - t0) * 1e3)
                comparisons.append(
                    LatencyComparison(
                        b, float(np.median(alg_ms)), float(np.median(net_ms)), self.repeats
                    )
                )
        return Validation(error, self.error_budget, len(inputs), tuple(comparisons))

    def validate(self, algorithm: ArrayFn, neural: ArrayFn, inputs: np.ndarray) -> Validation:
        """Measure (see :meth:`measure`) and adopt the result.

        Within budget the neural path opens (``ENABLED``), else it closes (``OVER_BUDGET``);
        either way the shadow window starts afresh, so a model that fell back can be
        re-enabled by a new validation.

        Returns:
            The validation.
        """
        result = self.measure(algorithm, neural, inputs)
        self.adopt(result)
        return result

    def adopt(self, validation: Validation) -> None:
        """Make ``validation`` the basis of routing (see :meth:`validate`)."""
        with self._lock:
            self._validation = validation
            self._validations += 1
            self._shadow_window.clear()
            fast = [c.batch_size for c in validation.latencies if c.neural_faster]
            if validation.within_budget:
                self._set_state(
                    TrackerState.ENABLED,
                    f"validated: relative error {validation.error:.3g} <= budget "
                    f"{self.error_budget:g}; neural faster at batch sizes {fast or 'none'}",
                )
            else:
                self._set_state(
                    TrackerState.OVER_BUDGET,
                    f"validated: relative error {validation.error:.3g} > budget "
                    f"{self.error_budget:g}",
                )

    # ------------------------------------------------------------------ routing
    def choose(self, batch_size: int = 1) -> RouteDecision:
        """Where a call of ``batch_size`` rows should go, and why (no side effects).

        Args:
            batch_size: Rows in the call (>= 1).

        Returns:
            ``NEURAL`` only when the neural path is open and the neural alternative was faster
            at the nearest measured batch size; ``ALGORITHM`` otherwise.
        """
        with self._lock:
            if self._state is not TrackerState.ENABLED or self._validation is None:
                return RouteDecision(Route.ALGORITHM, self._reason, batch_size=batch_size)
            c = self._validation.latency_at(batch_size)
            timing = (
                f"neural {c.neural_ms:.3g} ms vs algorithm {c.algorithm_ms:.3g} ms "
                f"at batch {c.batch_size}"
            )
            error = f"error {self._validation.error:.3g} <= budget {self.error_budget:g}"
            if c.neural_faster:
                return RouteDecision(
                    Route.NEURAL,
                    f"within budget ({error}) and faster ({timing})",
                    False,
                    batch_size,
                )
            return RouteDecision(
                Route.ALGORITHM, f"within budget ({error}) but slower ({timing})", False, batch_size
            )

    def plan(self, batch_size: int = 1) -> RouteDecision:
        """:meth:`choose`, then count the call and decide whether it is a shadow check.

        The k-th, 2k-th, ... neural calls (k = ``shadow_every``) are shadow checks.

        Returns:
            The decision, with ``shadow`` set.
        """
        with self._lock:
            decision = self.choose(batch_size)
            self._calls[decision.route] += 1
            self._last_route = decision.route
            if decision.route is Route.NEURAL:
                shadow = self._calls[Route.NEURAL] % self.shadow_every == 0
                return RouteDecision(decision.route, decision.reason, shadow, batch_size)
            return decision

    def record_latency(self, route: Route, seconds: float) -> None:
        """Record how long a served call took (for the report's medians)."""
        with self._lock:
            self._served_ms[Route(route)].append(seconds * 1e3)

    def relative_error(self, neural: np.ndarray, reference: np.ndarray) -> float:
        """Mean squared error of ``neural`` against ``reference`` over ``scale``."""
        return relative_error(neural, reference, self.scale)

    def record_shadow(self, neural: np.ndarray, reference: np.ndarray) -> float:
        """Record a shadow check and apply the drift rule.

        Args:
            neural: ``(N, d_out)`` neural outputs of the call.
            reference: ``(N, d_out)`` the algorithm's outputs on the same inputs.

        Returns:
            The relative error of this check.
        """
        diff = np.asarray(neural, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
        sse, count = float(np.sum(diff**2)), int(diff.size)
        error = sse / count / self.scale if math.isfinite(sse) and count else math.inf
        with self._lock:
            self._shadow_total += 1
            self._shadow_errors.append(error)
            self._shadow_window.append((sse, count))
            pooled = self._window_error()
            if (
                self._state is TrackerState.ENABLED
                and len(self._shadow_window) >= self.min_shadows
                and not pooled <= self.error_budget
            ):
                self._fallbacks += 1
                self._set_state(
                    TrackerState.FALLBACK,
                    f"drift: relative error {pooled:.3g} over the last "
                    f"{len(self._shadow_window)} shadow checks exceeds the budget "
                    f"{self.error_budget:g}; the algorithm serves until a new validation",
                )
        return error

    def fall_back(self, reason: str) -> None:
        """Close the neural path at once (e.g. a non-finite output), recording ``reason``."""
        with self._lock:
            if self._state is TrackerState.ENABLED:
                self._fallbacks += 1
            self._set_state(TrackerState.FALLBACK, reason)

    def _window_error(self) -> float:
        # Caller holds the lock. Pooled over every value in the window: the relative error of
        # all the examples the window checked, comparable with the validation error.
        sse = sum(s for s, _ in self._shadow_window)
        count = sum(n for _, n in self._shadow_window)
        if not count:
            return math.nan
        return sse / count / self.scale if math.isfinite(sse) else math.inf

    # ------------------------------------------------------------------ report
    def calls(self) -> dict[str, int]:
        """Calls served per route so far."""
        with self._lock:
            return {r.value: n for r, n in self._calls.items()}

    def summary(self) -> dict[str, Any]:
        """Plain data: state and reason, calls per route, latencies, shadow-error statistics.

        Returns:
            ``{"name", "state", "reason", "error_budget", "route", "routes", "calls",
            "latency_ms", "validation", "validations", "shadow", "fallbacks", "switches"}``;
            ``route`` is the route of the last call (``None`` before any), ``routes`` maps each
            measured batch size to the route a call of that size would take now.
        """
        with self._lock:
            errors = np.asarray(self._shadow_errors, dtype=np.float64)
            finite = errors[np.isfinite(errors)]
            window_error = self._window_error()
            return {
                "name": self.name,
                "state": self._state.value,
                "reason": self._reason,
                "error_budget": self.error_budget,
                "route": self._last_route.value if self._last_route else None,
                "routes": {str(b): self.choose(b).route.value for b in self.batch_sizes},
                "calls": {r.value: n for r, n in self._calls.items()},
                "latency_ms": {
                    "served_median": {r.value: _median_ms(d) for r, d in self._served_ms.items()},
                },
                "validation": self._validation.to_dict() if self._validation else None,
                "validations": self._validations,
                "shadow": {
                    "every": self.shadow_every,
                    "checks": self._shadow_total,
                    "window": len(self._shadow_window),
                    "window_error": None if math.isnan(window_error) else window_error,
                    "mean": float(finite.mean()) if finite.size else None,
                    "median": float(np.median(finite)) if finite.size else None,
                    "max": float(errors.max()) if errors.size else None,
                    "last": float(errors[-1]) if errors.size else None,
                },
                "fallbacks": self._fallbacks,
                "switches": list(self._switches),
            }
