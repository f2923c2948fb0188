"""Tasks importable by path (``tests._tasks:wine``), for tests that run real subprocesses."""

from __future__ import annotations

from selfimprove.tasks import SupervisedTask
from tests.conftest import wine_task


def wine() -> SupervisedTask:
    return wine_task("wine_test")
