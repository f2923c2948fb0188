"""How modules are run for measurement: one intra-op thread, so timings are comparable."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["single_thread", "time_batch1"]


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
