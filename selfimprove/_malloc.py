"""Bound glibc's malloc arenas and pin its mmap threshold, so a long-running loop's memory
stays flat.

Measured (``benchmarks/overhead``'s memory run, 400 cycles, two experiments a cycle): resident
memory rose about 10 MiB per 100 cycles with a ±30 MiB sawtooth, while Python's own objects
(tracemalloc) stayed within kilobytes. The cycle runs its blocking steps in worker threads, and
glibc gives each thread its own arena (up to 8 per core), each keeping freed fragments resident.
With at most two arenas (``MALLOC_ARENA_MAX=2``, the setting servers commonly use) the same run
grew about 1 MiB per 100 cycles.

The sawtooth that remained is glibc's *dynamic* mmap threshold: a block of at least 128 KiB is
mmapped and given back to the system when freed, but each such free raises the threshold (up to
32 MiB), so later large buffers (tensors, evaluation arrays) come from the heap, and freed they
stay resident until the top of the heap is free. Measured (1000 cycles of the same run, arenas
limited; resident memory, the allocator's bytes in use from ``mallinfo2`` and SQLite's own
``sqlite3_memory_used``, every 50 cycles): bytes in use rose 163.5 -> 166.5 MiB (0.06 MiB per 100
cycles in the second half) and SQLite's memory reached its page-cache cap (2.7 MiB) by cycle 300,
while resident memory jumped between ~505 and ~540 MiB as 3 to 42 MiB of freed heap came and
went. With the threshold pinned at 4 MiB (``mallopt(M_MMAP_THRESHOLD)``, which also turns the
dynamic adjustment off) resident memory went 507.7 -> 509.5 MiB from cycle 500 to 1000, no jumps.

Written by hand: each is one ``mallopt`` call through ctypes, and no maintained library wraps it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

__all__ = ["limit_malloc_arenas", "pin_mmap_threshold"]

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # glibc's mallopt parameter numbers
_M_MMAP_THRESHOLD = -3
_applied: int | None = None
_threshold: int | None = None


def _mallopt() -> Any | None:
    """glibc's ``mallopt``, or ``None`` where there is none (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return None


def limit_malloc_arenas(arenas: int) -> bool:
    """At most ``arenas`` malloc arenas in this process from now on (glibc on Linux only; once
    per process — a later call with another number is ignored).

    Returns:
        Whether the limit is in force (``False`` where there is no glibc, e.g. macOS, musl).
    """
    global _applied
    if _applied is not None:
        return True
    mallopt = _mallopt()
    if mallopt is None or mallopt(_M_ARENA_MAX, int(arenas)) != 1:
        return False
    _applied = int(arenas)
    logger.debug("malloc arenas limited to %d", arenas)
    return True


def pin_mmap_threshold(mib: int) -> bool:
    """Blocks of at least ``mib`` MiB are mmapped, and given back to the system when freed, from
    now on (glibc on Linux only; once per process — a later call with another size is ignored).

    Returns:
        Whether the threshold is in force (``False`` where there is no glibc).
    """
    global _threshold
    if _threshold is not None:
        return True
    mallopt = _mallopt()
    if mallopt is None or mallopt(_M_MMAP_THRESHOLD, int(mib) * 2**20) != 1:
        return False
    _threshold = int(mib)
    logger.debug("malloc mmap threshold pinned at %d MiB", mib)
    return True
