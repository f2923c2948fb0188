"""Executors: where improvement tasks run. One interface; local threads today, Ray later.

An executor maps a function over tasks with bounded concurrency and returns the results in
the order of the tasks, whatever order they finish in — so the loop records and learns from
them in a fixed order, and concurrency cannot change decisions (each experiment's seed comes
from its cycle, model and strategy, never from timing).

Same seed, same decisions: by default the local executor runs the tasks one after another, in
order, on one worker thread. Training in overlapping threads is not repeatable: dropout masks
and shuffles draw from torch's one process-wide generator, so which thread drew which numbers
followed the timing (measured: three seeded trainings in a thread pool gave three different
models, each different from the same training alone), and a matrix product's rounding follows
torch's intra-op thread count, which measurement switches while it times. ``overlap=True``
runs up to ``max_workers`` tasks at once on one intra-op thread each, faster on a many-core
machine, at the price of that repeatability.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from selfimprove.errors import ConfigError

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "get_executor"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Executor(abc.ABC):
    """Runs tasks, at most ``max_workers`` at a time."""

    max_workers: int

    @abc.abstractmethod
    async def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Apply ``fn`` to every item; results in the order of ``items``.

        An exception raised by ``fn`` is re-raised after every other task has finished (the
        loop's own ``fn`` turns strategy failures into failed experiments and never raises).
        """

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release workers (idempotent)."""


class LocalExecutor(Executor):
    """Tasks in a worker thread of this process: one at a time (repeatable), or overlapping.

    Args:
        max_workers: Tasks a cycle hands over at once (``max_concurrent_improvements``); with
            ``overlap``, also how many run at the same time.
        overlap: Run the tasks in overlapping threads (PyTorch releases the GIL in its
            kernels). Off by default: see the module's note on repeatability.
    """

    def __init__(self, max_workers: int = 3, *, overlap: bool = False) -> None:
        if max_workers < 1:
            raise ConfigError(f"max_workers must be >= 1, but got {max_workers=}.")
        self.max_workers = max_workers
        self.overlap = overlap
        self._threads = torch.get_num_threads()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _get_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_workers if self.overlap else 1,
                thread_name_prefix="selfimprove",
            )
        return self._pool

    async def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        overlapping = self.overlap and len(items) > 1 and self.max_workers > 1
        threads = 1 if overlapping else self._threads
        try:
            results = await self._gather(functools.partial(_on_threads, threads, fn), items)
        finally:
            torch.set_num_threads(self._threads)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    async def _gather(self, fn: Callable[[T], R], items: Sequence[T]) -> list[Any]:
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        futures = [loop.run_in_executor(pool, fn, item) for item in items]
        return await asyncio.gather(*futures, return_exceptions=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _on_threads(threads: int, fn: Callable[[T], R], item: T) -> R:
    """``fn(item)`` with ``threads`` intra-op threads, set in the worker thread itself."""
    torch.set_num_threads(threads)
    return fn(item)


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor}


def get_executor(name: str | Executor = "local", **kwargs: Any) -> Executor:
    """An executor from its name (or the executor itself)."""
    if isinstance(name, Executor):
        return name
    try:
        return EXECUTORS[name](**kwargs)
    except KeyError:
        raise ConfigError(
            f"unknown executor {name!r}; available: {', '.join(sorted(EXECUTORS))}."
        ) from None
