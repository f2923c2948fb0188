"""The README's Python example runs as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
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
    # readable: each decision by its name, figures rounded to 3 decimals
    assert all(re.fullmatch(r"\d+ \w+ \w+ \d\.\d{3} -> \d\.\d{3}", line) for line in printed)
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


def _block(marker: str) -> str:
    """The README's python example that contains ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, f"README should have one python example with {marker!r}"
    return found[0]


def test_readme_code_improvement_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The folder the README describes: a mymodule.py whose square(n) adds n to itself n times.
    slow = (
        "def square(n):\n    total = 0\n    for _ in range(n):\n        total += n\n"
        "    return total\n"
    )
    monkeypatch.chdir(tmp_path)  # an empty folder: the example writes mymodule.py itself
    exec(compile(_block("apply_improvement"), "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.split() == ["1", "pending"]
    assert (tmp_path / "mymodule.py").read_text() == slow  # untouched until approved
    # Then the README's commands, from the same folder, as a user types them.
    shown = re.search(r"Then, from the same folder:\n\n```bash\n(.*?)```", README.read_text(), re.S)
    assert shown is not None
    commands = [
        shlex.split(line.split("  # ")[0], comments=True)
        for line in shown.group(1).replace("\\\n", " ").splitlines()
    ]
    for command in commands:
        if command[2] == "reject":  # the alternative to approving, for a pending one
            continue
        done = subprocess.run(
            [sys.executable, "-m", "selfimprove", *command[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (command, done.stderr)
        text = (tmp_path / "mymodule.py").read_text()
        if command[2] == "approve":
            assert "return n * n" in text, done.stdout
    assert (tmp_path / "mymodule.py").read_text() == slow  # rolled back: the exact bytes


def test_readme_async_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(_block("asyncio.run"), "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out.splitlines()
    # readable: the decision's name and figures rounded to 3 (health to 2) decimals
    assert re.fullmatch(r"(promote|reject) \d\.\d{3} -> \d\.\d{3}", out[0]), out
    assert re.fullmatch(r"health [01]\.\d{2}", out[1]), out
