from __future__ import annotations

import asyncio
import threading
import time

import pytest

from selfimprove.errors import ConfigError
from selfimprove.loop.executors import LocalExecutor, get_executor


@pytest.mark.parametrize(("overlap", "most"), [(True, 2), (False, 1)])
def test_results_keep_task_order_and_concurrency_is_bounded(overlap: bool, most: int) -> None:
    ex = LocalExecutor(max_workers=2, overlap=overlap)
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
    assert peak == most  # one at a time unless overlapping was asked for
    ex.close()
    ex.close()  # idempotent


def test_errors_surface_after_the_others_finish() -> None:
    ex = LocalExecutor(max_workers=2, overlap=True)
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


def test_seeded_training_gives_the_same_model_through_the_executor_as_alone() -> None:
    """Dropout draws from torch's one global generator: overlapping threads interleave the
    draws, one-at-a-time keeps each task's seeded stream its own."""
    import torch

    def train(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(8, 64), torch.nn.Dropout(0.3), torch.nn.Linear(64, 1)
        )
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        x = torch.ones(32, 8)
        for _ in range(200):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    alone = [train(s) for s in range(3)]
    ex = LocalExecutor(max_workers=3)
    together = asyncio.run(ex.map(train, range(3)))
    ex.close()
    assert all(torch.equal(a, b) for a, b in zip(alone, together, strict=True))
