from __future__ import annotations

import asyncio
import threading
import time

import pytest

from selfimprove.errors import ConfigError
from selfimprove.loop.executors import LocalExecutor, get_executor


def test_results_keep_task_order_and_concurrency_is_bounded() -> None:
    ex = LocalExecutor(max_workers=2)
    running, peak = 0, 0
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05 * (5 - i))  # later tasks finish first
        with lock:
            running -= 1
        return i * i

    assert asyncio.run(ex.map(work, range(5))) == [0, 1, 4, 9, 16]
    assert peak == 2
    ex.close()
    ex.close()  # idempotent


def test_errors_surface_after_the_others_finish() -> None:
    ex = LocalExecutor(max_workers=2)
    done: list[int] = []

    def work(i: int) -> int:
        if i == 0:
            raise ValueError("boom")
        time.sleep(0.05)
        done.append(i)
        return i

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(ex.map(work, [0, 1, 2]))
    assert sorted(done) == [1, 2]
    ex.close()


def test_no_threads_leak_after_close() -> None:
    before = {t.name for t in threading.enumerate()}
    ex = get_executor("local", max_workers=3)
    asyncio.run(ex.map(lambda i: i, range(6)))
    ex.close()
    leaked = {t.name for t in threading.enumerate()} - before
    assert not [n for n in leaked if n.startswith("selfimprove")]


def test_unknown_executor() -> None:
    with pytest.raises(ConfigError, match="unknown executor 'gpu-farm'"):
        get_executor("gpu-farm")
    with pytest.raises(ConfigError, match="max_workers"):
        LocalExecutor(0)
