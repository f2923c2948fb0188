"""Who runs an experiment and whether it still does: owners, heartbeats and the stale rule.

A ``running`` experiment records its owner, ``host:pid:start`` (the process's start time in
milliseconds, so a reused pid is not mistaken for the owner), and a heartbeat time that a
daemon thread of the owning store refreshes. The rule (:func:`liveness`) is a pure function:
on the owner's own host a dead or replaced process makes the experiment stale at once; from
another host only an expired heartbeat does (Optuna's RDB heartbeat and ``fail_stale_trials``
work the same way). Written by hand because no library tracks liveness of rows in a ledger.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psutil

__all__ = [
    "HEARTBEAT_EXPIRY_S",
    "HEARTBEAT_INTERVAL_S",
    "Heartbeat",
    "Liveness",
    "liveness",
    "process_alive",
    "process_owner",
]

logger = logging.getLogger(__name__)

#: How often a store refreshes the heartbeat of its running experiments.
HEARTBEAT_INTERVAL_S = 15.0
#: A heartbeat older than this (seen from another host) makes an experiment stale.
HEARTBEAT_EXPIRY_S = 120.0


def _start_ms(pid: int) -> int | None:
    """When process ``pid`` started, in ms since the epoch; ``None`` when there is none."""
    try:
        return int(psutil.Process(pid).create_time() * 1000)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
        return None


@functools.cache
def _owner_of(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{_start_ms(pid) or 0}"


def process_owner() -> str:
    """This process as an experiment's owner: ``host:pid:start_ms``."""
    return _owner_of(os.getpid())


def process_alive(pid: int, start_ms: int) -> bool:
    """Whether process ``pid`` of this host runs and is the one that started at ``start_ms``."""
    now = _start_ms(pid)
    return now is not None and abs(now - start_ms) <= 10  # create_time has jiffy resolution


@dataclass(frozen=True)
class Liveness:
    """Whether a running experiment's owner is alive, and why (or why not)."""

    alive: bool
    reason: str


def liveness(
    owner: str | None,
    heartbeat_at: datetime | None,
    now: datetime,
    *,
    host: str | None = None,
    expiry_s: float = HEARTBEAT_EXPIRY_S,
    alive: Callable[[int, int], bool] = process_alive,
) -> Liveness:
    """Decide whether a ``running`` experiment still runs.

    Args:
        owner: Its owner (``host:pid:start_ms``); ``None`` for rows written before owners were
            recorded.
        heartbeat_at: Its last heartbeat.
        now: The current time (UTC, naive like the store's).
        host: This host's name (default: ``socket.gethostname()``).
        expiry_s: How old a heartbeat may be, for owners on other hosts.
        alive: Whether ``(pid, start_ms)`` is a live process of this host.
    """
    if owner is None:
        return Liveness(False, "no owner recorded (started by a selfimprove before schema 5)")
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        return Liveness(False, f"unreadable owner {owner!r}")
    owner_host, pid, start_ms = parts[0], int(parts[1]), int(parts[2])
    if owner_host == (host or socket.gethostname()):
        if alive(pid, start_ms):
            return Liveness(True, f"its process {pid} runs")
        return Liveness(False, f"its process {pid} on {owner_host} has ended")
    if heartbeat_at is None:
        return Liveness(False, f"no heartbeat from {owner_host}")
    age = (now - heartbeat_at).total_seconds()
    if age > expiry_s:
        return Liveness(False, f"no heartbeat from {owner_host} for {age:.0f} s")
    return Liveness(True, f"heartbeat from {owner_host} {age:.0f} s ago")


class Heartbeat:
    """A daemon thread that calls ``beat`` every ``interval_s`` until :meth:`stop`.

    Args:
        beat: Refreshes this process's heartbeats (a failure is logged, and retried next time).
        interval_s: Seconds between beats.
    """

    def __init__(self, beat: Callable[[], object], interval_s: float) -> None:
        self._beat, self._interval_s = beat, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="selfimprove-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._beat()
            except Exception:  # a busy or briefly unreachable database: try again next beat
                logger.warning("heartbeat failed; retrying in %.0f s", self._interval_s)

    def stop(self) -> None:
        """Stop beating (waits for a beat in progress)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
