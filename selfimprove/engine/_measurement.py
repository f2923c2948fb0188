"""Measuring an improvement: which way is better, and whether the change is significant.

Pure decisions behind :meth:`~selfimprove.engine.SelfImprovementEngine.measure_improvement`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selfimprove.errors import ConfigError
from selfimprove.measure.stats import Change, as_direction, mann_whitney_p
from selfimprove.objectives import Direction
from selfimprove.store import CapabilityRecord

__all__ = ["Significance", "metric_direction", "sample_significance", "threshold_significance"]


def metric_direction(
    metric_name: str, cap: CapabilityRecord | None, direction: Direction | str | None
) -> Direction:
    """The direction of a metric: its capability's, else the one given.

    Raises:
        ConfigError: A direction that contradicts the capability's, or none at all.
    """
    if cap is not None:
        d = as_direction(cap.direction)
        if direction is not None and as_direction(direction) is not d:
            raise ConfigError(
                f"{metric_name!r} is a capability to {d.value}; drop direction= or use "
                "another metric name."
            )
        return d
    if direction is not None:
        return as_direction(direction)
    raise ConfigError(
        f"metric {metric_name!r} is not a registered capability, so its direction is "
        "unknown: pass direction='minimize' or 'maximize'."
    )


@dataclass(frozen=True)
class Significance:
    """Whether a change is significant, by which test, on how many samples."""

    test: str
    p_value: float | None
    significant: bool
    n_before: int
    n_after: int


def sample_significance(
    before_samples: Sequence[float], after_samples: Sequence[float], test: str, alpha: float
) -> Significance:
    """A two-sided test of the samples before and after, at ``alpha``.

    Samples that never vary need no test (p 0 when they differ, else 1).

    Raises:
        ConfigError: Fewer than 2 finite samples a side, or an unknown test.
    """
    from scipy import stats  # imported here: scipy.stats costs ~0.8 s at CLI start-up

    b = np.asarray(before_samples, dtype=float)
    a = np.asarray(after_samples, dtype=float)
    if b.size < 2 or a.size < 2 or not (np.isfinite(b).all() and np.isfinite(a).all()):
        raise ConfigError(
            f"samples need at least 2 finite values on each side, but got {b.size} and {a.size}."
        )
    if test not in ("welch", "mann_whitney"):
        raise ConfigError(f"test must be 'welch' or 'mann_whitney', but got {test!r}.")
    if np.std(b) == 0 and np.std(a) == 0:
        used, p_value = "deterministic", 0.0 if b[0] != a[0] else 1.0
    elif test == "mann_whitney":
        used = "mann_whitney_u"
        p_value = mann_whitney_p(a, b, "two-sided")
    else:
        used = "welch_t"
        p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Significance(used, p_value, p_value < alpha, int(b.size), int(a.size))


def threshold_significance(change: Change, threshold: float) -> Significance:
    """Seed 002's rule without samples: significant when ``|relative| >= threshold``."""
    significant = bool(math.isfinite(change.relative) and abs(change.relative) >= threshold)
    return Significance("threshold", None, significant, 1, 1)
