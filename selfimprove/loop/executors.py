"""Executors: where improvement tasks run. One interface; local threads today, Ray later.

An executor maps a function over tasks with bounded concurrency and returns the results in
the order of the tasks, whatever order they finish in — so the loop records and learns from
them in a fixed order, and concurrency cannot change decisions (each experiment's seed comes
from its cycle, model and strategy, never from timing).
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

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
    """A thread pool. PyTorch releases the GIL in its kernels, so training in threads overlaps.

    Args:
        max_workers: Concurrent tasks (``max_concurrent_improvements``).
    """

    def __init__(self, max_workers: int = 3) -> None:
        if max_workers < 1:
            raise ConfigError(f"max_workers must be >= 1, but got {max_workers=}.")
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _get_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="selfimprove"
            )
        return self._pool

    async def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        futures = [loop.run_in_executor(pool, fn, item) for item in items]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


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
