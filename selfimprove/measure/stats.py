"""The engine's statistics: comparing samples and describing a change. Pure functions.

Every figure is direction-aware: an *improvement* is positive when the change goes the
objective's way (lower latency, higher accuracy), whatever the sign of the raw difference.

Two-sample comparisons use Welch's t-test (means; no equal-variance assumption) or the
Mann-Whitney U test (medians' ranks; for skewed samples such as timings, where one slow call
would dominate a mean). A scalar baseline gets the one-sample t-test or the Wilcoxon
signed-rank test. All tests are one-sided: is the treatment *better*? A sample with no spread
at all (a deterministic function) needs no test: it is better every time or never, so its
p-value is 0 or 1, as the judge does for checkpoint sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from selfimprove.errors import ConfigError
from selfimprove.objectives import Direction
from selfimprove.seeding import numpy_rng

__all__ = [
    "TESTS",
    "Change",
    "Comparison",
    "as_direction",
    "compare_samples",
    "confidence_level",
    "describe_change",
]

#: Test names accepted by :func:`compare_samples` (``auto`` picks by the kind of measure).
TESTS = ("auto", "welch", "mann_whitney")


def as_direction(value: Direction | str) -> Direction:
    """``value`` as a :class:`Direction`.

    Raises:
        ConfigError: Not ``minimize`` or ``maximize``.
    """
    try:
        return value if isinstance(value, Direction) else Direction(str(value).lower())
    except ValueError:
        raise ConfigError(
            f"direction must be 'minimize' (lower is better) or 'maximize' (higher is better), "
            f"but got {value!r}."
        ) from None


def _sign(direction: Direction) -> float:
    return 1.0 if direction is Direction.MAXIMIZE else -1.0


def _relative(diff: float, base: float) -> float:
    return diff / abs(base) if base != 0 and math.isfinite(base) else math.nan


@dataclass(frozen=True)
class Comparison:
    """A one-sided test that the treatment beats the baseline, with its figures.

    Attributes:
        test: ``welch_t``, ``mann_whitney_u``, ``one_sample_t``, ``wilcoxon`` or
            ``deterministic``.
        statistic: What the relative improvement is computed on: ``mean`` or ``median``.
        n_baseline: Baseline samples (1 for a scalar baseline).
        n_treatment: Treatment samples.
        baseline_center: Baseline mean or median (the scalar itself when given one).
        treatment_center: Treatment mean or median.
        baseline_std: Sample standard deviation of the baseline (0 for a scalar).
        treatment_std: Sample standard deviation of the treatment.
        improvement: ``treatment_center - baseline_center``, signed so that positive is better.
        relative_improvement: ``improvement / |baseline_center|`` (NaN for a zero baseline).
        p_value: One-sided p-value (small: the treatment is better).
        effect_size: Cohen's d, signed so that positive is better (pooled SD; the treatment's
            SD against a scalar). Infinite when neither sample varies but they differ.
        rank_biserial: For Mann-Whitney U: P(treatment better) − P(baseline better) over all
            pairs, in [−1, 1]; ``None`` otherwise.
        ci_low: Lower end of the confidence interval of ``improvement``.
        ci_high: Upper end.
        ci_level: The interval's level (0.95).
        ci_method: ``welch`` / ``t`` (analytic) or ``bootstrap`` (seeded, of the medians).
    """

    test: str
    statistic: str
    n_baseline: int
    n_treatment: int
    baseline_center: float
    treatment_center: float
    baseline_std: float
    treatment_std: float
    improvement: float
    relative_improvement: float
    p_value: float
    effect_size: float
    rank_biserial: float | None
    ci_low: float
    ci_high: float
    ci_level: float
    ci_method: str

    @property
    def relative_ci(self) -> tuple[float, float]:
        """The interval of ``improvement`` relative to ``|baseline_center|``."""
        return (
            _relative(self.ci_low, self.baseline_center),
            _relative(self.ci_high, self.baseline_center),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, with the relative interval."""
        low, high = self.relative_ci
        return {**asdict(self), "relative_ci_low": low, "relative_ci_high": high}


def _as_array(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=float)
    if arr.size == 0:
        raise ConfigError(f"{what} has no samples; pass at least 3 values.")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} holds NaN or infinite values; only finite samples compare.")
    return arr


def _bootstrap_median_ci(
    baseline: np.ndarray, treatment: np.ndarray, sign: float, level: float, seed: int
) -> tuple[float, float]:
    rng = numpy_rng("engine_median_ci", seed)
    resamples = 2000
    b = baseline[rng.integers(0, baseline.size, size=(resamples, baseline.size))]
    t = treatment[rng.integers(0, treatment.size, size=(resamples, treatment.size))]
    diffs = sign * (np.median(t, axis=1) - np.median(b, axis=1))
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def compare_samples(
    baseline: Sequence[float] | float,
    treatment: Sequence[float],
    direction: Direction | str,
    *,
    test: str = "welch",
    level: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """One-sided test that ``treatment`` is better than ``baseline`` in ``direction``.

    Args:
        baseline: Baseline samples, or one baseline value (a scalar: one-sample tests).
        treatment: Treatment samples.
        direction: Which way is better.
        test: ``welch`` (means) or ``mann_whitney`` (ranks; medians reported).
        level: Level of the confidence interval of the improvement.
        seed: Seeds the bootstrap interval of the medians.

    Returns:
        The comparison (see :class:`Comparison`).

    Raises:
        ConfigError: Unknown test, fewer than 2 treatment samples, or non-finite samples.
    """
    from scipy import stats  # imported here: scipy.stats costs ~0.8 s at CLI start-up

    if test not in ("welch", "mann_whitney"):
        raise ConfigError(f"test must be 'welch' or 'mann_whitney', but got {test!r}.")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), but got {level=}.")
    d = as_direction(direction)
    sign = _sign(d)
    alternative = "greater" if d is Direction.MAXIMIZE else "less"
    t = _as_array(treatment, "the treatment")
    if t.size < 2:
        raise ConfigError(f"need at least 2 treatment samples, but got {t.size}.")
    use_median = test == "mann_whitney"
    center = np.median if use_median else np.mean
    t_center = float(center(t))
    t_std = float(np.std(t, ddof=1))
    q = (1 + level) / 2

    if isinstance(baseline, (int, float, np.floating, np.integer)):
        b_value = float(baseline)
        if not math.isfinite(b_value):
            raise ConfigError(f"the baseline value must be finite, but got {baseline!r}.")
        diff = sign * (t_center - b_value)
        mean_diff = sign * (float(np.mean(t)) - b_value)
        if t_std == 0:
            name = "deterministic"
            p = 0.0 if diff > 0 else 1.0
            ci_low = ci_high = diff
            effect = math.inf if mean_diff > 0 else (-math.inf if mean_diff < 0 else 0.0)
            ci_method = "exact"
        else:
            effect = mean_diff / t_std
            if use_median:
                name = "wilcoxon"
                deltas = t - b_value
                if np.all(deltas == 0):
                    p = 1.0
                else:
                    p = float(stats.wilcoxon(deltas, alternative=alternative).pvalue)
                rng = numpy_rng("engine_median_ci", seed)
                boot = np.median(t[rng.integers(0, t.size, size=(2000, t.size))], axis=1)
                lo, hi = np.quantile(sign * (boot - b_value), [(1 - level) / 2, q])
                ci_low, ci_high, ci_method = float(lo), float(hi), "bootstrap"
            else:
                name = "one_sample_t"
                p = float(stats.ttest_1samp(t, b_value, alternative=alternative).pvalue)
                half = float(stats.t.ppf(q, t.size - 1)) * t_std / math.sqrt(t.size)
                ci_low, ci_high, ci_method = diff - half, diff + half, "t"
        return Comparison(
            test=name,
            statistic="median" if use_median else "mean",
            n_baseline=1,
            n_treatment=int(t.size),
            baseline_center=b_value,
            treatment_center=t_center,
            baseline_std=0.0,
            treatment_std=t_std,
            improvement=diff,
            relative_improvement=_relative(diff, b_value),
            p_value=p,
            effect_size=effect,
            rank_biserial=None,
            ci_low=ci_low,
            ci_high=ci_high,
            ci_level=level,
            ci_method=ci_method,
        )

    b = _as_array(baseline, "the baseline")
    if b.size < 2:
        raise ConfigError(f"need at least 2 baseline samples, but got {b.size}.")
    b_center = float(center(b))
    b_std = float(np.std(b, ddof=1))
    diff = sign * (t_center - b_center)
    mean_diff = sign * (float(np.mean(t)) - float(np.mean(b)))
    pooled = math.sqrt(((t.size - 1) * t_std**2 + (b.size - 1) * b_std**2) / (t.size + b.size - 2))
    if pooled > 0:
        effect = mean_diff / pooled
    else:
        effect = math.inf if mean_diff > 0 else (-math.inf if mean_diff < 0 else 0.0)
    rank_biserial: float | None = None
    if t_std == 0 and b_std == 0:
        name, ci_method = "deterministic", "exact"
        p = 0.0 if diff > 0 else 1.0
        ci_low = ci_high = diff
    elif use_median:
        name, ci_method = "mann_whitney_u", "bootstrap"
        res = stats.mannwhitneyu(t, b, alternative=alternative)
        p = float(res.pvalue)
        u_t = float(stats.mannwhitneyu(t, b, alternative="two-sided").statistic)
        rank_biserial = sign * (2 * u_t / (t.size * b.size) - 1)
        ci_low, ci_high = _bootstrap_median_ci(b, t, sign, level, seed)
    else:
        name, ci_method = "welch_t", "welch"
        p = float(stats.ttest_ind(t, b, equal_var=False, alternative=alternative).pvalue)
        vt, vb = t_std**2 / t.size, b_std**2 / b.size
        se = math.sqrt(vt + vb)
        dof = se**4 / (
            (vt**2 / (t.size - 1) if vt else 0.0) + (vb**2 / (b.size - 1) if vb else 0.0)
        )
        half = float(stats.t.ppf(q, dof)) * se
        ci_low, ci_high = diff - half, diff + half
    return Comparison(
        test=name,
        statistic="median" if use_median else "mean",
        n_baseline=int(b.size),
        n_treatment=int(t.size),
        baseline_center=b_center,
        treatment_center=t_center,
        baseline_std=b_std,
        treatment_std=t_std,
        improvement=diff,
        relative_improvement=_relative(diff, b_center),
        p_value=p if math.isfinite(p) else 1.0,
        effect_size=effect,
        rank_biserial=rank_biserial,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_level=level,
        ci_method=ci_method,
    )


@dataclass(frozen=True)
class Change:
    """The change of one metric from ``before`` to ``after`` (seed 002's figures).

    Attributes:
        absolute: ``after - before``.
        relative: ``(after - before) / |before|`` (NaN when ``before`` is 0).
        percent: ``relative × 100``.
        improvement: ``relative`` signed so that positive is better for the direction.
    """

    absolute: float
    relative: float
    percent: float
    improvement: float


def describe_change(before: float, after: float, direction: Direction | str) -> Change:
    """Seed 002's absolute, relative and percent change, plus the direction-aware improvement.

    Raises:
        ConfigError: A non-finite value, or an unknown direction.
    """
    if not (math.isfinite(before) and math.isfinite(after)):
        raise ConfigError(
            f"before and after must be finite numbers, but got {before!r} and {after!r}."
        )
    d = as_direction(direction)
    absolute = after - before
    relative = _relative(absolute, before)
    return Change(absolute, relative, relative * 100, _sign(d) * relative)


def confidence_level(improvement: float, significant: bool | None) -> str:
    """Seed 002's confidence in a change: ``high`` (> 50 %), ``medium`` (> 15 %), ``low``.

    The level follows the size of the relative change; when samples were compared and the
    change was *not* significant, the level is ``low`` whatever its size (a large change that
    the noise explains is not a confident one).

    Args:
        improvement: Relative change (its magnitude is used).
        significant: The test's verdict, or ``None`` when there were no samples to test.
    """
    if significant is False or not math.isfinite(improvement):
        return "low"
    size = abs(improvement)
    if size > 0.5:
        return "high"
    if size > 0.15:
        return "medium"
    return "low"
