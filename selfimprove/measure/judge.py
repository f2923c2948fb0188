"""The judge: the one place that decides whether a candidate replaces the incumbent.

A candidate is promoted only if, on the **validation** split,

(a) the targeted objective's error-like form shrinks by at least ``performance_threshold``
    (relative), and
(b) a one-sided paired test says the gain is significant (p < ``alpha``): McNemar's exact test
    for per-example correctness (accuracy), a paired bootstrap of the mean difference for
    continuous per-example errors, Mann-Whitney U over interleaved timing repeats for latency,
    and
(c) no guard objective regresses beyond its tolerance (accuracy: by more than its tolerance in
    points; latency: beyond its tolerance *and* significantly, since timings are noisy), and
    none crosses its :attr:`~selfimprove.objectives.Objective.limit`.

Size (checkpoint bytes, parameters) guards differently by what is being improved. While the
target is an efficiency objective (latency, size), size may grow by at most its tolerance (5 %):
a faster model should not be a bloated one. While the target is the task's quality (accuracy,
MSE, perplexity), a better model often needs more capacity, so size is a cost the user bounds
with a limit (``SupervisedTask(size_limit_bytes=...)``), not a relative veto: the growth is
recorded in the statistics, and the latency guard still applies. (Measured: with a +5 % size
veto, every larger architecture `evolve` found was rejected however much better it was, e.g.
neural_sort MSE 0.0120 → 0.0071 on validation, p = 0.0005, rejected for +909 % size.)

Deterministic objectives (checkpoint size, parameter count) need no test: a smaller checkpoint
is smaller every time it is measured, so their p-value is 0 when they improve and 1 otherwise.

Measured and not adopted (2026-12-05, ``python -m benchmarks.honesty --mode full``): testing an
accuracy gain on the per-example Brier score (a proper scoring rule, far more power than
McNemar's test on a small validation set) while still requiring the accuracy gain itself. It
promoted 12 of 120 A/A candidates (10 %; on digits 9 of 40, against 2 of 40 with McNemar's
test), 5 of the 9 no better on test: a reseeded network's probabilities differ significantly
from its twin's on the validation examples without its accuracy being better, so a significant
Brier gain is not evidence of an accuracy gain.

The test split is reported with every decision and never decides. Brain signals (hormones,
triggers, bandits) do not reach this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from selfimprove.config import JudgeConfig
from selfimprove.measure.evaluation import Evaluation
from selfimprove.measure.stats import mann_whitney_p, paired_test
from selfimprove.objectives import (
    DETERMINISTIC_OBJECTIVES,
    EFFICIENCY_OBJECTIVES,
    Objective,
)
from selfimprove.store.records import Decision
from selfimprove.tasks import Task

__all__ = ["DETERMINISTIC", "EFFICIENCY", "Judge", "Judgement", "superseded"]

#: Objectives whose measurement has no noise: the same model always gives the same value.
DETERMINISTIC = frozenset(DETERMINISTIC_OBJECTIVES)
#: Objectives about cost rather than quality.
EFFICIENCY = frozenset(EFFICIENCY_OBJECTIVES)


@dataclass(frozen=True)
class Judgement:
    """A decision, its one-line reason, and the statistics behind it."""

    decision: Decision
    reason: str
    statistics: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.decision is Decision.PROMOTE


def superseded(judgement: Judgement, why: str) -> Judgement:
    """A promotion turned into a rejection because its incumbent was replaced before it could
    be committed (``why``): the candidate was judged against a version that is no longer the
    one it would replace, so it is not promoted without being judged again."""
    return Judgement(
        Decision.REJECT,
        f"{judgement.reason}; not promoted: {why}",
        {**judgement.statistics, "superseded": why},
    )


class Judge:
    """Applies the promotion rule.

    Args:
        config: Threshold, alpha and bootstrap size.
        seed: Seeds the bootstrap (the same seed gives the same decision).
    """

    def __init__(self, config: JudgeConfig | None = None, *, seed: int = 0) -> None:
        self.config = config or JudgeConfig()
        self.seed = seed

    def judge(
        self,
        task: Task,
        incumbent: Evaluation,
        candidate: Evaluation,
        objective: str | None = None,
    ) -> Judgement:
        """Decide on ``candidate`` against ``incumbent``, targeting ``objective``.

        Args:
            task: Gives the objectives (direction, tolerance).
            incumbent: Evaluation of the incumbent.
            candidate: Evaluation of the candidate (same task, same splits).
            objective: Name of the targeted objective (default: the task's primary).

        Returns:
            The decision with its reason and statistics (validation decides; test reported).
        """
        cfg = self.config
        target = task.objective(objective) if objective else task.primary
        before, after = incumbent.value(target.name), candidate.value(target.name)
        rel = target.relative_improvement(before, after)
        st: dict[str, Any] = {
            "objective": target.name,
            "direction": target.direction.value,
            "before": before,
            "after": after,
            "relative_improvement": rel,
            "threshold": cfg.performance_threshold,
            "alpha": cfg.alpha,
            "test_before": incumbent.value(target.name, "test"),
            "test_after": candidate.value(target.name, "test"),
        }
        st["test_relative_improvement"] = target.relative_improvement(
            st["test_before"], st["test_after"]
        )
        if not candidate.finite or not math.isfinite(after):
            st.update(test=None, p_value=None, guards={})
            return Judgement(
                Decision.REJECT,
                "diverged: the candidate outputs NaN or infinite values on validation",
                st,
            )
        b_samples, a_samples = incumbent.samples(target.name), candidate.samples(target.name)
        if target.name in DETERMINISTIC:
            p = 0.0 if target.is_better(after, before) else 1.0
            st.update(test="deterministic", p_value=p)
        elif b_samples is None or a_samples is None:
            st.update(test=None, p_value=None)
            p = math.nan
        else:
            name, p = paired_test(
                target, b_samples, a_samples, resamples=cfg.bootstrap_resamples, seed=self.seed
            )
            st.update(test=name, p_value=p, n=len(a_samples))
        guards = self._guards(task, target, incumbent, candidate)
        st["guards"] = guards

        timed_on = candidate.latency.device if candidate.latency is not None else None
        if timed_on is not None:
            st["latency_device"] = timed_on
        where = "" if target.name in EFFICIENCY else " on validation"
        if target.name == "latency_ms" and timed_on not in (None, "cpu"):
            where = f" (timed on {timed_on})"
        shown = f"{target.name} {before:.4g} → {after:.4g}{where}"
        if not rel >= cfg.performance_threshold:
            return Judgement(
                Decision.REJECT,
                f"{shown}: error {_pct(-rel)} vs the required −{cfg.performance_threshold:.0%}",
                st,
            )
        if not (math.isfinite(p) and p < cfg.alpha):
            return Judgement(
                Decision.REJECT,
                f"{shown}: not significant ({st['test']} p={p:.3g} ≥ α={cfg.alpha})",
                st,
            )
        failed = [g for g, info in guards.items() if not info["passed"]]
        if failed:
            g = task.objective(failed[0])
            info = guards[g.name]
            if not info["within_limit"]:
                return Judgement(
                    Decision.REJECT,
                    f"{shown}, but {g.name} {info['after']:.4g} is beyond its limit "
                    f"{g.limit:.4g} {g.unit}".rstrip(),
                    st,
                )
            return Judgement(
                Decision.REJECT,
                f"{shown}, but guard {g.name} regressed {g.format_regression(info['regression'])}"
                f" (tolerance {g.format_regression(info['tolerance']).lstrip('+')})",
                st,
            )
        return Judgement(
            Decision.PROMOTE,
            f"{shown}: error {_pct(-rel)}, {st['test']} p={p:.2g}",
            st,
        )

    def _guards(
        self, task: Task, target: Objective, incumbent: Evaluation, candidate: Evaluation
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for g in task.objectives:
            if g.name == target.name:
                continue
            before, after = incumbent.value(g.name), candidate.value(g.name)
            if not (math.isfinite(before) and math.isfinite(after)):
                continue  # not measured for this pair
            nominal = _nominal_latency(g, target, incumbent, candidate)
            if nominal is not None:
                out[g.name] = _counted_guard(g, (before, after), nominal)
                continue
            info: dict[str, Any] = {
                "before": before,
                "after": after,
                "regression": g.regression(before, after),
                "tolerance": g.tolerance,
                "absolute": g.absolute_tolerance,
                "limit": g.limit,
                "within_limit": g.within_limit(after),
                "passed": True,
            }
            if not info["within_limit"]:
                info["passed"] = False
            elif g.name in DETERMINISTIC and target.name not in EFFICIENCY:
                info["rule"] = "limit only: size is a cost while quality is improved"
            elif not g.within_tolerance(before, after):
                b_s, a_s = incumbent.samples(g.name), candidate.samples(g.name)
                if g.name == "latency_ms" and b_s is not None and a_s is not None:
                    # Timings are noisy: a guard fails only on a significant slowdown.
                    p = mann_whitney_p(a_s, b_s, "greater")
                    info["p_value"] = p
                    info["passed"] = p >= self.config.alpha
                else:
                    info["passed"] = False
            out[g.name] = info
        return out


def _nominal_latency(
    g: Objective, target: Objective, incumbent: Evaluation, candidate: Evaluation
) -> tuple[float, float] | None:
    """The counted (nominal) latencies to guard on, when latency guards a target that is not
    latency and both were counted; ``None``: guard on the measured timings."""
    if g.name != "latency_ms" or target.name == "latency_ms":
        return None
    b, a = incumbent.nominal_latency_ms, candidate.nominal_latency_ms
    return None if b is None or a is None else (b, a)


def _counted_guard(
    g: Objective, measured: tuple[float, float], nominal: tuple[float, float]
) -> dict[str, Any]:
    """The latency guard's tolerance decided on counted cost, so that timing cannot change a
    quality decision; a limit the user set in milliseconds still holds the measured latency
    (the measured timings are recorded beside)."""
    (before, after), (m_before, m_after) = nominal, measured
    passed = g.within_tolerance(before, after) and g.within_limit(m_after)
    return {
        "before": before,
        "after": after,
        "measured_before": m_before,
        "measured_after": m_after,
        "regression": g.regression(before, after),
        "tolerance": g.tolerance,
        "absolute": g.absolute_tolerance,
        "limit": g.limit,
        "within_limit": g.within_limit(m_after),
        "passed": passed,
        "rule": "nominal latency (counted ops and FLOPs at batch 1): the target is not "
        "latency, so timing does not decide",
    }


def _pct(change: float) -> str:
    return f"{change:+.1%}".replace("-", "−")
