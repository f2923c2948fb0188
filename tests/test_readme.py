"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from selfimprove.strategies import STRATEGIES

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(line.split()[2] in ("promote", "reject", "failed") for line in printed)
    # The planned loop: more than one strategy family on a model with a search space.
    families = {STRATEGIES[line.split()[1]].family for line in printed}
    assert len(families) > 1, printed
    # The README shows a run of it: the same cycles and strategies (the seconds a search may
    # spend are wall time, so a later candidate's figures can differ on a loaded machine).
    shown = re.search(r"It prints.*?:\n\n```\n(.*?)```", README.read_text(), flags=re.S)
    assert shown is not None, "README does not show the example's output"
    assert [line.split()[:2] for line in printed] == [
        line.split()[:2] for line in shown.group(1).strip().splitlines()
    ]
    assert (tmp_path / ".selfimprove-wine" / "selfimprove.db").exists()


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text().split("\n## ")[0]
    assert "make run" in head and "make test" in head


def test_readme_async_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[1], "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[0] in ("promote", "reject") and 0 <= float(out[1]) <= 1
