"""The evaluator: per-example scores on validation and test, latency, parameters and size.

Latency is timed with one thread, after a warm-up, over repeats interleaved across the models
being compared (so that a burst of load on the machine hits all of them alike), and reported as
the median, at batch 1 and at a serving batch.

Device: the evaluator runs models on its ``device`` (the configured one; a CPU-only model, such
as an int8-quantized one, on the CPU) and gives each model back where it found it. Latency is
timed on one device for all the models compared — the CPU as soon as one of them runs only
there, so two models are never timed on different hardware — with the device synchronised
around every timed call; each :class:`LatencyProfile` says which device it timed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.config import JudgeConfig
from selfimprove.nn.device import CPU, cpu_only, module_device, placed_on, synchronize
from selfimprove.nn.modules import checkpoint_bytes
from selfimprove.nn.runtime import nominal_latency_ms, single_thread
from selfimprove.tasks import Task

__all__ = ["Evaluation", "Evaluator", "LatencyProfile", "SplitScores"]


@dataclass(frozen=True)
class SplitScores:
    """Per-example values of each data objective on one split, and their means."""

    per_example: dict[str, np.ndarray]
    finite: bool  # every output was a finite number

    def value(self, objective: str) -> float:
        if not self.finite:
            return math.nan
        return float(np.mean(self.per_example[objective]))


@dataclass(frozen=True)
class LatencyProfile:
    """Timed forward passes (milliseconds per call)."""

    batch1_ms: np.ndarray
    serving_ms: np.ndarray
    serving_batch: int
    device: str = "cpu"

    @property
    def median_ms(self) -> float:
        return float(np.median(self.batch1_ms))

    @property
    def serving_median_ms(self) -> float:
        return float(np.median(self.serving_ms))


@dataclass(frozen=True)
class Evaluation:
    """Everything measured about one model on one task."""

    validation: SplitScores
    test: SplitScores
    latency: LatencyProfile | None
    parameters: int
    size_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)
    #: Batch-1 cost counted in ops and FLOPs (:func:`~selfimprove.nn.nominal_latency_ms`); the
    #: latency the judge's guard uses when latency is not the target, so timing cannot decide.
    nominal_latency_ms: float | None = None

    @property
    def finite(self) -> bool:
        return self.validation.finite and self.test.finite

    def value(self, objective: str, split: str = "validation") -> float:
        """Value of ``objective`` (data objectives per split; latency and size are global)."""
        if objective == "latency_ms":
            return self.latency.median_ms if self.latency is not None else math.nan
        if objective == "size_bytes":
            return float(self.size_bytes)
        if objective == "parameters":
            return float(self.parameters)
        scores = self.validation if split == "validation" else self.test
        return scores.value(objective)

    def samples(self, objective: str, split: str = "validation") -> np.ndarray | None:
        """The paired samples behind ``objective`` (per example, or per latency repeat)."""
        if objective == "latency_ms":
            return self.latency.batch1_ms if self.latency is not None else None
        scores = self.validation if split == "validation" else self.test
        return scores.per_example.get(objective)

    def summary(self) -> dict[str, float]:
        """Flat metrics for manifests and measurements."""
        out: dict[str, float] = {}
        for split, scores in (("validation", self.validation), ("test", self.test)):
            for name in scores.per_example:
                out[f"{split}_{name}"] = scores.value(name)
        if self.latency is not None:
            out["latency_ms"] = self.latency.median_ms
            out["serving_latency_ms"] = self.latency.serving_median_ms
            out["serving_batch"] = float(self.latency.serving_batch)
        if self.nominal_latency_ms is not None:
            out["nominal_latency_ms"] = self.nominal_latency_ms
        out["parameters"] = float(self.parameters)
        out["size_bytes"] = float(self.size_bytes)
        return out


class Evaluator:
    """Measures models on a task's validation and test splits.

    Args:
        config: Supplies ``latency_repeats`` and ``serving_batch``.
        device: Where models run while measured (default: the CPU).
    """

    def __init__(self, config: JudgeConfig | None = None, device: torch.device = CPU) -> None:
        self.config = config or JudgeConfig()
        self.device = device

    def _device_for(self, modules: Sequence[nn.Module]) -> torch.device:
        """The device to run ``modules`` on together: the CPU if any of them runs only there."""
        return CPU if any(cpu_only(m) for m in modules) else self.device

    @torch.inference_mode()
    def scores(self, module: nn.Module, task: Task, split: str, batch: int = 1024) -> SplitScores:
        """Per-example objective values of ``module`` on one split."""
        module.eval()
        data = task.splits().get(split)
        with placed_on(module, self._device_for([module])) as device:
            outs = [
                module(data.x[i : i + batch].to(device)).cpu() for i in range(0, len(data), batch)
            ]
        outputs = torch.cat(outs)
        finite = bool(torch.isfinite(outputs).all())
        return SplitScores(task.per_example(outputs, data.y.cpu()), finite)

    @torch.inference_mode()
    def latency(self, modules: Sequence[nn.Module], task: Task) -> list[LatencyProfile]:
        """Time ``modules`` side by side on one device: one thread, warm-up, interleaved
        repeats."""
        device = self._device_for(modules)
        with contextlib.ExitStack() as stack:
            for m in modules:
                stack.enter_context(placed_on(m, device))
            b1, bs = self._timed(modules, task, device)
        serving = self.config.serving_batch
        return [
            LatencyProfile(np.asarray(a), np.asarray(b), serving, str(device))
            for a, b in zip(b1, bs, strict=True)
        ]

    def _timed(
        self, modules: Sequence[nn.Module], task: Task, device: torch.device
    ) -> tuple[list[list[float]], list[list[float]]]:
        repeats, serving = self.config.latency_repeats, self.config.serving_batch
        x1, xs = task.example_input(1).to(device), task.example_input(serving).to(device)
        for m in modules:
            m.eval()
        b1: list[list[float]] = [[] for _ in modules]
        bs: list[list[float]] = [[] for _ in modules]
        with single_thread():
            for m in modules:  # warm-up
                for _ in range(3):
                    m(x1)
                    m(xs)
            synchronize(device)
            n = len(modules)
            for r in range(repeats):
                # Rotate the order every repeat: the model timed right after another one
                # inherits its cache state, and a fixed order would bias against the second.
                for i in [(r + k) % n for k in range(n)]:
                    m = modules[i]
                    t0 = time.perf_counter()
                    m(x1)
                    synchronize(device)
                    t1 = time.perf_counter()
                    m(xs)
                    synchronize(device)
                    t2 = time.perf_counter()
                    b1[i].append((t1 - t0) * 1e3)
                    bs[i].append((t2 - t1) * 1e3)
        return b1, bs

    def evaluate(
        self,
        modules: Sequence[nn.Module],
        task: Task,
        *,
        with_latency: bool = True,
        known: Sequence[Evaluation | None] | None = None,
    ) -> list[Evaluation]:
        """Full evaluations of ``modules`` (latency timed interleaved across them).

        Args:
            modules: The models.
            task: Supplies the splits.
            with_latency: Time the models (side by side).
            known: Evaluations already made of the same modules this cycle (``None`` where
                there is none): their scores, parameters and size are reused, and only the
                latency is measured again, beside the others.
        """
        profiles: list[LatencyProfile | None] = (
            list(self.latency(modules, task)) if with_latency else [None] * len(modules)
        )
        known = list(known) if known is not None else [None] * len(modules)
        out = []
        for m, prof, prior in zip(modules, profiles, known, strict=True):
            if prior is not None:
                out.append(dataclasses.replace(prior, latency=prof))
                continue
            out.append(
                Evaluation(
                    validation=self.scores(m, task, "validation"),
                    test=self.scores(m, task, "test"),
                    latency=prof,
                    parameters=sum(p.numel() for p in m.parameters()),
                    size_bytes=checkpoint_bytes(m),
                    nominal_latency_ms=(
                        nominal_latency_ms(m, task.example_input(1).to(module_device(m)))
                        if with_latency
                        else None
                    ),
                )
            )
        return out
