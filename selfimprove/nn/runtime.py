"""How modules are run for measurement: one intra-op thread, so timings are comparable; and a
deterministic stand-in for batch-1 latency (:func:`nominal_latency_ms`) for the decisions that
must not depend on timing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "NOMINAL_FLOPS_PER_MS",
    "NOMINAL_MS_PER_OP",
    "nominal_latency_ms",
    "single_thread",
    "time_batch1",
]

#: Nominal cost of one dispatched tensor operation at batch 1 (ms): the per-op overhead that
#: dominates small models. Fitted on a 2-core Xeon, torch 2.13 CPU, one thread, MLPs of width
#: 8-1024 and depth 1-8: 4.0 microseconds per op and 10 GFLOP/s explained the measured minima.
NOMINAL_MS_PER_OP = 0.004
#: Nominal arithmetic rate (FLOPs per millisecond, i.e. 10 GFLOP/s) for the same fit.
NOMINAL_FLOPS_PER_MS = 1.0e7


class _OpCounter(TorchDispatchMode):
    """Counts the tensor operations a forward pass dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


@torch.inference_mode()
def nominal_latency_ms(module: nn.Module, x: torch.Tensor) -> float:
    """What one forward of ``module`` on ``x`` costs on a nominal CPU core, in milliseconds.

    Counted, not timed: ``ops x NOMINAL_MS_PER_OP + FLOPs / NOMINAL_FLOPS_PER_MS``, from one
    forward pass under torch's FLOP counter and an op counter. The same architecture and input
    give the same figure on any machine under any load, so a guard decided on it cannot flip
    with timing (measured latency is still recorded beside it).
    """
    was_training = module.training
    module.eval()
    flops, ops = FlopCounterMode(display=False), _OpCounter()
    try:
        with flops, ops:
            module(x)
    finally:
        module.train(was_training)
    return ops.ops * NOMINAL_MS_PER_OP + flops.get_total_flops() / NOMINAL_FLOPS_PER_MS


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run a block with one intra-op thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_batch1(modules: Sequence[nn.Module], x: torch.Tensor, repeats: int) -> list[np.ndarray]:
    """Batch-1 forward times of ``modules`` in milliseconds, timed side by side.

    One thread, three warm-up calls each, then ``repeats`` rounds that call every module once in
    turn (a burst of load hits all of them alike). Train/eval flags are restored afterwards.

    Args:
        modules: The models to time.
        x: One input example, shape ``(1, ...)``.
        repeats: Timed rounds.

    Returns:
        One array of ``repeats`` timings per module.
    """
    flags = [m.training for m in modules]
    for m in modules:
        m.eval()
    times: list[list[float]] = [[] for _ in modules]
    try:
        with single_thread():
            for m in modules:
                for _ in range(3):
                    m(x)
            for _ in range(repeats):
                for i, m in enumerate(modules):
                    t0 = time.perf_counter()
                    m(x)
                    times[i].append((time.perf_counter() - t0) * 1e3)
    finally:
        for m, flag in zip(modules, flags, strict=True):
            m.train(flag)
    return [np.asarray(t) for t in times]
