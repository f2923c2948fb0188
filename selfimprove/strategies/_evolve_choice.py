"""How ``evolve`` picks from its trials' Pareto front (error x cost): the point the target calls
for, within the judge's guards, and how it was chosen (as data for the record)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from selfimprove.errors import StrategyError
from selfimprove.nn.modules import checkpoint_bytes
from selfimprove.nn.runtime import time_batch1
from selfimprove.objectives import EFFICIENCY_OBJECTIVES
from selfimprove.tasks import Task

__all__ = ["COSTS", "ChoiceSettings", "Point", "choose_point", "incumbent_record", "within_guards"]

#: Cost objectives a search may trade error against.
COSTS = EFFICIENCY_OBJECTIVES


class ChoiceSettings(Protocol):
    """The settings the choice reads (``EvolveConfig`` has them)."""

    @property
    def cost(self) -> str: ...
    @property
    def error_tolerance(self) -> float: ...
    @property
    def trial_epochs(self) -> int: ...
    @property
    def latency_repeats(self) -> int: ...


@dataclass
class Point:
    """One complete trial: its model and its measurements."""

    number: int
    params: dict[str, Any]
    module: nn.Module
    error: float
    latency_ms: float | None  # timed only when latency is the search's cost
    nominal_ms: float  # counted batch-1 cost (see selfimprove.nn.nominal_latency_ms)
    size_bytes: int
    parameters: int
    epochs: int

    def cost(self, name: str) -> float:
        """This point's value of cost objective ``name`` (one of :data:`COSTS`)."""
        return float(getattr(self, name))

    def row(self) -> dict[str, Any]:
        """This point as plain data, for the record."""
        return {
            "trial": self.number,
            "params": self.params,
            "holdout_error": self.error,
            "latency_ms": self.latency_ms,
            "nominal_latency_ms": self.nominal_ms,
            "size_bytes": self.size_bytes,
            "parameters": self.parameters,
            "epochs": self.epochs,
        }


@torch.inference_mode()
def within_guards(point: Point, task: Task, inc_latency: float | None, inc_nominal: float) -> bool:
    """Whether the judge's latency and size guards would let ``point`` replace the incumbent.

    Latency as the judge reads it: measured (``inc_latency``, when the search timed its trials
    because latency is its cost; the judge also needs significance, so this is the stricter
    reading), else counted (``inc_nominal``, the nominal batch-1 cost the judge guards quality
    targets on, which timing cannot change).
    """
    names = {o.name for o in task.objectives}
    if "latency_ms" in names:
        lat = task.objective("latency_ms")
        timed = point.latency_ms is not None and inc_latency is not None
        before, after = (
            (inc_latency, point.latency_ms) if timed else (inc_nominal, point.nominal_ms)
        )
        assert before is not None and after is not None
        if not (lat.within_tolerance(before, after) and lat.within_limit(after)):
            return False
    return "size_bytes" not in names or task.objective("size_bytes").within_limit(point.size_bytes)


def choose_point(
    target: str,
    front: list[Point],
    incumbent: nn.Module,
    x1: torch.Tensor,
    s: ChoiceSettings,
    inc_error: float,
    inc_latency: float | None,
    task: Task,
    inc_nominal: float,
) -> tuple[Point, dict[str, Any]]:
    """The Pareto point ``target`` calls for, and how it was chosen (as data).

    Raises:
        StrategyError: Latency / size target and no point reaches the incumbent's error.
    """
    if target not in COSTS:
        admitted = [p for p in front if within_guards(p, task, inc_latency, inc_nominal)]
        best = (admitted or front)[0]  # sorted by (error, cost)
        return best, {
            "rule": (
                "lowest holdout error on the Pareto front among the points within the "
                "task's latency and size guards"
                if admitted
                else "lowest holdout error on the Pareto front (no point within the "
                "task's latency and size guards)"
            )
            + f" (ties: lowest {s.cost})",
            "holdout_error": best.error,
            "admitted": [p.number for p in admitted],
        }
    bar = inc_error + s.error_tolerance
    qualifying = [p for p in front if p.error <= bar]
    if not qualifying:
        raise StrategyError(
            f"evolve for {target}: no point on the Pareto front reached the incumbent's "
            f"holdout error {inc_error:.4g} (+ tolerance {s.error_tolerance:g}); the best "
            f"reached {front[0].error:.4g}. Give trials more epochs (trial_epochs="
            f"{s.trial_epochs}) or a larger budget, or allow error_tolerance."
        )
    rule = (
        f"among Pareto points with holdout error <= {bar:.4g} (the incumbent's "
        f"{inc_error:.4g} + tolerance {s.error_tolerance:g}), the "
    )
    if target == "latency_ms":
        # Re-time the qualifying points side by side (with the incumbent) and take the
        # fastest: the per-trial timings were taken at different moments.
        timings = time_batch1(
            [incumbent] + [p.module for p in qualifying], x1, 2 * s.latency_repeats
        )
        inc_now = float(np.median(timings[0]))
        first = inc_now if inc_latency is None else inc_latency
        medians = [float(np.median(t)) / inc_now * first for t in timings[1:]]
        k = int(np.argmin(medians))
        return qualifying[k], {
            "rule": rule + "fastest, re-timed side by side",
            "qualifying": [
                {"trial": p.number, "holdout_error": p.error, "latency_ms": m}
                for p, m in zip(qualifying, medians, strict=True)
            ],
            "incumbent_latency_ms": inc_latency,
        }
    best = min(qualifying, key=lambda p: (p.cost(target), p.error))
    return best, {
        "rule": rule + f"smallest {target}",
        "qualifying": [
            {"trial": p.number, "holdout_error": p.error, target: p.cost(target)}
            for p in qualifying
        ],
    }


def incumbent_record(
    inc: nn.Module, error: float, latency: float | None, nominal: float
) -> dict[str, Any]:
    """The incumbent's figures the choice was measured against, for the record."""
    return {
        "holdout_error": error,
        "latency_ms": latency,
        "nominal_latency_ms": nominal,
        "size_bytes": checkpoint_bytes(inc),
        "parameters": sum(p.numel() for p in inc.parameters()),
    }
