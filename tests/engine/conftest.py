"""Fixtures of the engine tests: an engine on a fresh store of each backend, and a tiny real
project."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfimprove.engine import SelfImprovementEngine

#: A module whose ``f`` is slow on purpose (a loop where a product would do).
SLOW_MODULE = b'''"""A tiny project module."""

import math  # kept: the patch must leave imports alone


# f(n) = n * n, the long way round
def f(n):
    total = 0
    for _ in range(n):
        total += n
    return total


class Shape:
    """A class whose method is not touched."""

    def area(self, side):
        return side * side  # unchanged
'''

FAST_F = "def f(n):\n    return n * n\n"
BROKEN_F = "def f(n):\n    return n + n\n"

#: Checks f(3) == 9, then prints the seconds 30 calls of f(20000) take (a benchmark).
CHECK = (
    "import time, mod; assert mod.f(3) == 9, 'f(3) != 9'; "
    "t = time.perf_counter(); [mod.f(20000) for _ in range(30)]; "
    "print(time.perf_counter() - t)"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with ``mod.py`` (slow ``f``), the root code improvements may touch."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "mod.py").write_bytes(SLOW_MODULE)
    return root


@pytest.fixture
def check_argv() -> list[str]:
    return [sys.executable, "-c", CHECK]


@pytest.fixture
def engine(home: Path, store_url: str | None) -> Iterator[SelfImprovementEngine]:
    """An engine on a new store, once on each backend (see ``store_url`` in tests/conftest.py)."""
    e = SelfImprovementEngine(home=home)
    yield e
    e.close()
