"""Testing an approach: the run's settings, the sampling, and the verdict. Pure decisions.

:func:`run_settings` checks a :meth:`~selfimprove.engine.SelfImprovementEngine.test_approach`
call and decides its direction and test; :func:`take_samples` calls the approach and the
baseline alternately; :func:`judge_approach` turns the comparison into success or not, with
the reason in one line. The engine's :class:`~selfimprove.engine._experiments.Experiments`
writes what they return.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from selfimprove.engine._profiles import pct
from selfimprove.errors import ConfigError
from selfimprove.measure.stats import Comparison, as_direction
from selfimprove.objectives import Direction
from selfimprove.store import ExperimentRecord, ExperimentStatus

__all__ = [
    "MEASURES",
    "ApproachVerdict",
    "RunSettings",
    "SampleFailure",
    "Samples",
    "judge_approach",
    "run_settings",
    "take_samples",
]

#: What a sample is: a call's wall-clock time, or the number the call returns.
MEASURES = ("time", "value")


@dataclass(frozen=True)
class RunSettings:
    """How an approach is tested, and why (see :func:`run_settings`).

    Attributes:
        direction: Which way is better.
        test: ``welch`` or ``mann_whitney``.
        interleaved: Whether a baseline function is sampled (else a fixed baseline figure).
        reason: Why this direction and test.
    """

    direction: Direction
    test: str
    interleaved: bool
    reason: str


def _check_runnable(exp: ExperimentRecord) -> None:
    runnable = exp.status is ExperimentStatus.PLANNED or (
        exp.status is ExperimentStatus.STALE and exp.started_at is None
    )
    if not runnable:
        raise ConfigError(
            f"experiment {exp.id} is {exp.status.value}; only a planned experiment "
            "can be tested (generate a new one with generate_experiments)."
        )


def run_settings(
    exp: ExperimentRecord,
    *,
    has_baseline_function: bool,
    baseline_value: float | None,
    repeats: int,
    measure: str,
    direction: Direction | str | None,
    test: str,
    warmup: int,
    capability_direction: Callable[[int], str],
) -> RunSettings:
    """Check a test of ``exp`` and decide its direction and statistical test.

    Timings are better lower; values go the way given, else their capability's way. ``auto``
    picks Mann-Whitney U for timings (skewed) and Welch's t-test for values.

    Args:
        exp: The experiment to test.
        has_baseline_function: Whether a baseline function was given.
        baseline_value: The fixed baseline figure, if given instead.
        repeats: Samples of each side.
        measure: ``time`` or ``value``.
        direction: For ``value``: which way is better.
        test: ``auto``, ``welch`` or ``mann_whitney``.
        warmup: Unrecorded calls of each before sampling.
        capability_direction: The direction of a capability, by id.

    Returns:
        The direction, the test and why.

    Raises:
        ConfigError: The experiment already ran, or the arguments do not fit together.
    """
    _check_runnable(exp)
    if has_baseline_function == (baseline_value is not None):
        raise ConfigError("pass exactly one of baseline_function and baseline_value.")
    if measure not in MEASURES:
        raise ConfigError(f"measure must be one of {MEASURES}, but got {measure!r}.")
    if not 3 <= repeats <= 100_000:
        raise ConfigError(f"repeats must be in [3, 100000], but got {repeats=}.")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, but got {warmup=}.")
    if test not in ("auto", "welch", "mann_whitney"):
        raise ConfigError(f"test must be 'auto', 'welch' or 'mann_whitney', not {test!r}.")
    if measure == "time":
        d, why = Direction.MINIMIZE, "timings: lower is better"
    elif direction is not None:
        d, why = as_direction(direction), "direction given"
    elif exp.capability_id is not None:
        d, why = as_direction(capability_direction(exp.capability_id)), "the capability's"
    else:
        raise ConfigError(
            "measure='value' needs a direction: pass direction='maximize' or 'minimize'."
        )
    if baseline_value is not None and not math.isfinite(baseline_value):
        raise ConfigError(f"baseline_value must be finite, but got {baseline_value!r}.")
    if test != "auto":
        return RunSettings(d, test, has_baseline_function, f"{why}; {test} as asked")
    chosen = "mann_whitney" if measure == "time" else "welch"
    return RunSettings(d, chosen, has_baseline_function, f"{why}; {chosen} for {measure}s")


@dataclass
class Samples:
    """The samples taken so far, and which side was being called last."""

    baseline: list[float] = field(default_factory=list)
    approach: list[float] = field(default_factory=list)
    side: str = "setup"


class SampleFailure(Exception):
    """The approach or the baseline raised: ``samples`` says how far it got.

    Args:
        samples: What was taken before the failure (``side``: the one that raised).
        error: The exception raised.
    """

    def __init__(self, samples: Samples, error: Exception) -> None:
        super().__init__(f"the {samples.side} raised {type(error).__name__}: {error}")
        self.samples = samples
        self.error = error


def _sample(fn: Callable[[], Any], measure: str) -> float:
    """One sample of ``fn``: its wall-clock time, or the finite number it returns."""
    if measure == "time":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    out = fn()
    if isinstance(out, bool) or not isinstance(out, (int, float, np.number)):
        raise TypeError(f"returned {type(out).__name__}, not a number (measure='value')")
    value = float(out)
    if not math.isfinite(value):
        raise ValueError(f"returned {value}, not a finite number")
    return value


def take_samples(
    test_function: Callable[[], Any],
    baseline_function: Callable[[], Any] | None,
    *,
    repeats: int,
    warmup: int,
    measure: str,
) -> Samples:
    """Call the approach (and the baseline) ``warmup`` times unrecorded, then ``repeats`` times.

    The two are called alternately (baseline first on even repeats, the approach first on odd
    ones) so that drift in the machine's speed hits both alike.

    Raises:
        SampleFailure: Either function raised (any exception: the code under test failed).
    """
    s = Samples()

    def call(fn: Callable[[], Any], which: str) -> float:
        s.side = which
        return _sample(fn, measure)

    try:
        for _ in range(warmup):
            if baseline_function is not None:
                call(baseline_function, "baseline")
            call(test_function, "approach")
        for i in range(repeats):
            if baseline_function is not None and i % 2 == 0:
                s.baseline.append(call(baseline_function, "baseline"))
            s.approach.append(call(test_function, "approach"))
            if baseline_function is not None and i % 2 == 1:
                s.baseline.append(call(baseline_function, "baseline"))
    except Exception as exc:  # any failure of the code under test is a failed experiment
        raise SampleFailure(s, exc) from exc
    return s


@dataclass(frozen=True)
class ApproachVerdict:
    """Whether an approach succeeded, and why (see :func:`judge_approach`)."""

    success: bool
    significant: bool
    exceeded_expectation: bool
    reason: str


def judge_approach(
    cmp: Comparison,
    *,
    threshold: float,
    alpha: float,
    expected: float | None,
    measure: str,
) -> ApproachVerdict:
    """Success = relative improvement above ``threshold`` and p below ``alpha``.

    Args:
        cmp: The comparison of the approach with the baseline.
        threshold: Relative improvement to exceed.
        alpha: Significance level.
        expected: The improvement expected before the run (``None``: none).
        measure: ``time`` (figures in seconds) or ``value``.

    Returns:
        The verdict, with the figures in its reason.
    """
    rel = cmp.relative_improvement
    significant = cmp.p_value < alpha
    success = bool(math.isfinite(rel) and rel > threshold and significant)
    exceeded = bool(expected is not None and math.isfinite(rel) and rel >= expected)
    unit = "s" if measure == "time" else ""
    reason = (
        f"{cmp.statistic} {cmp.baseline_center:.4g}{unit} → {cmp.treatment_center:.4g}{unit}: "
        f"improvement {pct(rel)} (threshold {threshold:.0%}), "
        f"{cmp.test} p={cmp.p_value:.3g} ({'<' if significant else '≥'} α={alpha})"
        f" → {'success' if success else 'no success'}"
    )
    return ApproachVerdict(success, significant, exceeded, reason)
