"""Opening a home: created only where asked, never by a command that reads, and readable when
it may not be written to."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.tasks import resolve_task

TASK = "tests._tasks:wine"


def _register(home: Path) -> None:
    task = resolve_task(TASK)
    torch.manual_seed(0)
    with SelfImprover(home) as si:
        si.register_model(
            "wine", TASK, task.build({"width": 8, "depth": 1}), {"width": 8, "depth": 1}
        )


def _tree(path: Path) -> list[tuple[str, bytes]]:
    return [
        (str(p.relative_to(path)), p.read_bytes() if p.is_file() else b"")
        for p in sorted(path.rglob("*"))
    ]


@contextlib.contextmanager
def read_only(home: Path) -> Iterator[None]:
    """``home`` and its database made read-only: ``chmod -w`` for a user; root ignores modes,
    so for root the folder and the file are made immutable (``chattr +i``), or the test skips."""
    targets = [home, home / "selfimprove.db"]
    if os.geteuid() != 0:
        modes = {t: t.stat().st_mode for t in targets}
        for t in targets:
            t.chmod(modes[t] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            for t in targets:
                t.chmod(modes[t])
        return
    try:
        done = subprocess.run(["chattr", "+i", *map(str, targets)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i failed: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, targets)], check=True)


def test_a_command_that_reads_never_creates_a_home(home: Path) -> None:
    for kwargs in ({"read_only": True}, {"create": False}):
        with pytest.raises(ConfigError, match=r"no selfimprove home at .*selfimprove run --home"):
            SelfImprover(home, **kwargs)  # type: ignore[arg-type]
        assert not home.exists()


def test_a_folder_without_a_store_is_not_a_home(home: Path) -> None:
    home.mkdir()
    with pytest.raises(ConfigError, match="no selfimprove home at"):
        SelfImprover(home, read_only=True)
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("", "the home folder path is empty"),
        ("   ", "the home folder path is empty"),
        ("x" * 300, "File name too long"),
        ("a\x00b", "embedded null byte"),
    ],
)
def test_an_unusable_home_path_is_one_line(path: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        SelfImprover(path)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert len(str(info.value)) < 400


def test_a_question_mark_in_the_home_path_is_part_of_the_path(tmp_path: Path) -> None:
    home = tmp_path / "a?b#c%20d"
    _register(home)
    assert (home / "selfimprove.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a?b#c%20d"]  # no stray 'a' store
    with SelfImprover(home, read_only=True) as si:
        assert [m["name"] for m in si.models()] == ["wine"]


def test_a_read_only_home_can_be_read_and_is_left_untouched(home: Path) -> None:
    _register(home)
    before = _tree(home)
    with read_only(home):
        with pytest.raises(ConfigError, match="not writable"):
            SelfImprover(home)
        with SelfImprover(home, read_only=True) as si:
            copy = si._opened.read_only_copy
            assert copy is not None and Path(copy.name).is_dir()
            status = si.status()
            assert status["models"] == 1 and "read from a copy" in status["store"]
            assert si.models()[0]["checkpoint"] == "ok"
            assert si.history() == []
        assert not Path(copy.name).exists()  # the copy is removed on close
    assert _tree(home) == before
