"""Executors: where experiments' work runs — a worker thread of this process, or a Ray cluster.

An executor maps a function over items with bounded concurrency and returns the results in
the order of the items, whatever order they finish in — so the loop records and learns from
them in a fixed order, and concurrency cannot change decisions (each experiment's seed comes
from its cycle, model and strategy, never from timing). The loop hands it
:class:`~selfimprove.loop.work.ExperimentWork` items through :meth:`Executor.run`: plain data,
so the work may run in another process or on another machine; only the driver judges and
commits.

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

from selfimprove.config import EXECUTOR_NAMES, SelfImprovementConfig
from selfimprove.errors import ConfigError
from selfimprove.loop.work import ExperimentWork, WorkResult, run_work

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "executor_for",
    "get_executor",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Executor(abc.ABC):
    """Runs tasks, at most ``max_workers`` at a time."""

    max_workers: int

    async def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Apply ``fn`` to every item; results in the order of ``items``.

        An exception raised by ``fn`` (or a lost worker) is re-raised after every other item
        has finished.
        """
        results = await self._gather(fn, items)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)

    async def run(self, works: Sequence[ExperimentWork]) -> list[WorkResult]:
        """Run experiments' work (:func:`~selfimprove.loop.work.run_work`); results in the
        order of ``works``. A work whose worker was lost (after the executor's retries) comes
        back as a failure with the reason, never as an exception: its experiment is recorded
        failed and the cycle goes on."""
        results = await self._gather(run_work, works)
        return [
            WorkResult(error=self.lost(r)) if isinstance(r, BaseException) else r for r in results
        ]

    @staticmethod
    def _gpus(item: Any) -> float:
        """GPUs to reserve for ``item``: one for a work that trains on ``cuda`` (Ray then
        makes the GPU it assigns the worker's ``cuda:0``), none otherwise (``auto`` uses a GPU
        only where the worker sees one without a reservation)."""
        return 1.0 if str(getattr(item, "device", "cpu")).startswith("cuda") else 0.0

    def lost(self, exc: BaseException) -> str:
        """The recorded reason of a work that raised instead of returning its result."""
        return f"{type(exc).__name__}: {_first_line(exc, '')}"

    @abc.abstractmethod
    async def _gather(self, fn: Callable[[T], R], items: Sequence[T]) -> list[Any]:
        """``fn`` over ``items``, in order; an exception stands in for its item's result."""

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
        _check_workers(max_workers)
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

    async def _gather(self, fn: Callable[[T], R], items: Sequence[T]) -> list[Any]:
        overlapping = self.overlap and len(items) > 1 and self.max_workers > 1
        threads = 1 if overlapping else self._threads
        call = functools.partial(_on_threads, threads, fn)
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        try:
            futures = [loop.run_in_executor(pool, call, item) for item in items]
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            torch.set_num_threads(self._threads)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _first_line(exc: BaseException, default: str) -> str:
    """The first line of ``exc``'s message (``default`` when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else default


def _check_workers(max_workers: int) -> None:
    if max_workers < 1:
        raise ConfigError(f"max_workers must be >= 1, but got {max_workers=}.")


def _on_threads(threads: int, fn: Callable[[T], R], item: T) -> R:
    """``fn(item)`` with ``threads`` intra-op threads, set in the worker thread itself."""
    torch.set_num_threads(threads)
    return fn(item)


#: Seconds a worker may need beyond its work's hard budget limit (starting a worker process,
#: importing torch, moving the bytes) before the work is given up as hung.
WORKER_GRACE_S = 120.0


class RayExecutor(Executor):
    """Each work item is a Ray task, on any node of a Ray cluster.

    What a work needs travels with it (plain data: the task by reference, checkpoint bytes with
    their sha256, budget, seed); the candidate comes back as bytes. A worker lost in the middle
    (its process killed, its node gone) is retried by Ray up to ``max_retries`` times with the
    same work, so the same seed gives the same candidate; after that the experiment is recorded
    failed with the reason. Ray is written by others and does this well; nothing here
    schedules.

    Args:
        max_workers: Work items a cycle hands over at once (``max_concurrent_improvements``).
        address: A running cluster (``host:port`` of its head, ``ray://host:port`` for Ray
            Client, or ``auto``); ``None`` starts a local one for this process. An address
            that does not answer is refused at once, before anything is written.
        max_retries: Ray's retries of a work whose worker was lost (0 to 100).
        num_cpus: CPUs Ray reserves for each work item (default: as many as the torch
            threads it trains with, the config's ``threads``, so that works never share a
            core).
        runtime_env: Passed to ``ray.init`` (e.g. environment variables for the workers).
        connect_timeout_s: How long to wait for the head to answer.
        grace_s: Seconds a work may take beyond its budget's hard limit before it is given up
            as hung (its Ray task cancelled, its experiment failed with the reason).

    Raises:
        ConfigError: Ray is not installed, a bad value, or the cluster does not answer.
    """

    def __init__(
        self,
        max_workers: int = 3,
        *,
        address: str | None = None,
        max_retries: int = 3,
        num_cpus: float | None = None,
        runtime_env: dict[str, Any] | None = None,
        connect_timeout_s: float = 5.0,
        grace_s: float = WORKER_GRACE_S,
    ) -> None:
        _check_workers(max_workers)
        if not 0 <= max_retries <= 100:
            raise ConfigError(f"max_retries must be in [0, 100], but got {max_retries=}.")
        if not 0 < grace_s <= 86_400:
            raise ConfigError(f"grace_s must be in (0, 86400] seconds, but got {grace_s=}.")
        if num_cpus is not None and not 0 < num_cpus <= 1024:
            raise ConfigError(f"num_cpus must be in (0, 1024], but got {num_cpus=}.")
        self.max_workers = max_workers
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.address = address
        self.grace_s = grace_s
        self._ray, reused = _connect_ray(address, runtime_env, connect_timeout_s)
        self._owned = not reused
        self._remote: dict[Callable[..., Any], Any] = {}

    async def _gather(self, fn: Callable[[T], R], items: Sequence[T]) -> list[Any]:
        ray = self._ray
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = ray.remote(fn)
        out: list[Any] = []
        for start in range(0, len(items), self.max_workers):
            refs = [
                remote.options(
                    num_cpus=self._cpus(item),
                    num_gpus=self._gpus(item),
                    max_retries=self.max_retries,
                ).remote(item)
                for item in items[start : start + self.max_workers]
            ]
            for ref, item in zip(refs, items[start : start + self.max_workers], strict=True):
                timeout = _patience(item, self.grace_s)
                try:
                    out.append(await asyncio.to_thread(ray.get, ref, timeout=timeout))
                except Exception as exc:  # a lost worker (after Ray's retries), or a hung one
                    if isinstance(exc, ray.exceptions.GetTimeoutError):
                        ray.cancel(ref, force=True)
                    out.append(exc)
        return out

    def _cpus(self, item: Any) -> float:
        """CPUs to reserve for ``item``: ``num_cpus`` if given, else the torch threads a
        work trains with (works sharing a core trained 5 to 30 times slower here)."""
        if self.num_cpus is not None:
            return self.num_cpus
        return float(getattr(item, "threads", 1))

    @staticmethod
    def _gpus(item: Any) -> float:
        """GPUs to reserve for ``item``: one for a work that trains on ``cuda`` (Ray then
        makes the GPU it assigns the worker's ``cuda:0``), none otherwise (``auto`` uses a GPU
        only where the worker sees one without a reservation)."""
        return 1.0 if str(getattr(item, "device", "cpu")).startswith("cuda") else 0.0

    def lost(self, exc: BaseException) -> str:
        if isinstance(exc, self._ray.exceptions.GetTimeoutError):
            return (
                f"{type(exc).__name__}: no result within its budget's hard limit plus "
                f"{self.grace_s:g} s; the Ray task was cancelled"
            )
        first = _first_line(exc, "no detail")
        return (
            f"{type(exc).__name__}: the Ray worker running it was lost ({first}); "
            f"retried {self.max_retries} time(s)"
        )

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False


def _patience(item: Any, grace_s: float) -> float | None:
    """How long to wait for ``item``'s result: its budget's hard limit plus ``grace_s``
    (``None``, for ever, for an item without a budget)."""
    budget = getattr(item, "budget", None)
    return None if budget is None else budget.hard_limit_s + grace_s


def _connect_ray(
    address: str | None, runtime_env: dict[str, Any] | None, timeout_s: float
) -> tuple[Any, bool]:
    """Ray and whether this process was already connected (then it is reused, and left
    connected at close); an address that does not answer is refused in one line."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray: pip install 'selfimprove[ray]' (or use the local "
            "executor)."
        ) from None
    if ray.is_initialized():
        return ray, True
    if address not in (None, "auto"):
        _check_reachable(address, timeout_s)
    kwargs: dict[str, Any] = {"log_to_driver": False, "runtime_env": runtime_env}
    if address is None:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = _first_line(exc, type(exc).__name__)
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: {first}; "
            "start one with `ray start --head` or leave --ray-address out for a local one."
        ) from None
    return ray, False


def _check_reachable(address: str, timeout_s: float) -> None:
    """A TCP connection to the head at ``address`` (``[ray://]host:port``), or a ConfigError."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"the Ray address {address!r} is not host:port (e.g. 127.0.0.1:6379, "
            "ray://head:10001, or auto)."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; start one with "
            "`ray start --head` or leave --ray-address out for a local one."
        ) from None


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": RayExecutor}
assert set(EXECUTORS) == set(EXECUTOR_NAMES)


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


def executor_for(config: SelfImprovementConfig) -> Executor:
    """The executor ``config`` names (``executor``, ``ray_address``), connected."""
    if config.executor == "ray":
        return RayExecutor(config.max_concurrent_improvements, address=config.ray_address)
    return LocalExecutor(config.max_concurrent_improvements)
