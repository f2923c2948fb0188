"""The CLI on homes that are missing, damaged or read-only, and with bad strategy settings
(in process: each call is a command a user types)."""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner, Result

from selfimprove.loop.improver import SelfImprover
from selfimprove.surfaces.cli.app import app
from tests.loop.test_home import read_only
from tests.surfaces._fuzz import make_home, snapshot

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with ``wine`` v1, built once; tests work on copies."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", functools.cache(typer.main.get_command))
        yield make_home(tmp_path_factory.mktemp("cli_homes") / "home")


@pytest.fixture
def home(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import shutil

    for var in ("SELFIMPROVE_HOME", "SELFIMPROVE_DB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(built, tmp_path / "home"))


def cli(*args: str) -> Result:
    result = RUNNER.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def refused(result: Result, needle: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and needle in lines[0], lines


def test_a_missing_home_is_named_and_not_created(home: Path, tmp_path: Path) -> None:
    typo = tmp_path / "hme"
    for args in (["status"], ["models"], ["history"], ["export"], ["engine", "assess"]):
        refused(cli(*args, "--home", str(typo)), f"no selfimprove home at {typo}")
    refused(cli("improve", "wine", "--home", str(typo)), "selfimprove run --home")
    refused(cli("rollback", "wine", "--home", str(typo)), "no selfimprove home")
    for verb in (["improvements"], ["show", "1"], ["approve", "1"], ["reject", "1"]):
        refused(cli("engine", *verb, "--home", str(typo)), f"no selfimprove home at {typo}")
    refused(cli("engine", "rollback", "1", "--home", str(typo)), "no selfimprove home")
    refused(cli("status"), "no selfimprove home at")  # ./.selfimprove: not there either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_a_ledger_or_cluster_that_does_not_answer_leaves_no_new_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = tmp_path / "new-home"
    monkeypatch.setenv("SELFIMPROVE_DB", "postgresql://nobody:secret@127.0.0.1:1/none")
    refused(cli("run", "--home", str(new)), "cannot open database")
    monkeypatch.delenv("SELFIMPROVE_DB")
    if importlib.util.find_spec("ray") is not None:
        args = ("--executor", "ray", "--ray-address", "127.0.0.1:1")
        refused(cli("run", "--home", str(new), *args), "cannot reach the Ray cluster")
    assert not new.exists()


def test_an_empty_or_impossible_home_is_one_line(home: Path) -> None:
    refused(cli("status", "--home", ""), "the path is empty")
    refused(cli("run", "--home", " "), "the path is empty")
    refused(cli("status", "--home", "x" * 300), "File name too long")


def test_a_path_the_system_refuses_is_one_line_for_every_command(home: Path) -> None:
    long = str(home.parent / ("9" * 400))
    refused(cli("plasticity", "visualize", "--results_dir", long), "File name too long")
    refused(cli("dashboard", "--home", str(home), "--out", long), "File name too long")


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (["nosuchkey=1"], "train does not understand the settings ['nosuchkey']; its settings"),
        (["lr=abc"], "lr='abc' is not a finite number > 0"),
        (["lr=nan"], "lr='nan'"),
        (["lr=-1"], "lr='-1'"),
        (["lr=0.1", "lr=0.2"], "--param lr is given twice"),
        (["lr"], "KEY=VALUE"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_recorded(
    home: Path, params: list[str], needle: str
) -> None:
    before = snapshot(home)
    args = [a for p in params for a in ("-p", p)]
    refused(cli("improve", "wine", *args, "--budget-epochs", "2", "--home", str(home)), needle)
    assert snapshot(home) == before


def test_a_trial_longer_than_the_budget_is_refused(home: Path) -> None:
    result = cli("improve", "wine", "-s", "tune", "-p", "trial_epochs=9", "--budget-epochs", "5")
    refused(result, "no selfimprove home")  # no --home: ./.selfimprove does not exist
    result = cli(
        "improve", "wine", "-s", "tune", "-p", "trial_epochs=9",
        "--budget-epochs", "5", "--home", str(home),
    )  # fmt: skip
    refused(result, "trial_epochs='9' is not an integer in [1, 5] (at most the budget's epochs)")


def test_status_and_models_show_damaged_files(home: Path) -> None:
    version = home / "models" / "wine" / "v1"
    ckpt = version / "model.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:64])
    manifest = json.loads((version / "manifest.json").read_text())
    (version / "manifest.json").write_text(json.dumps({**manifest, "params": {"width": 99}}))
    for command in ("status", "models"):
        result = cli(command, "--home", str(home))
        assert result.exit_code == 0, result.output
        assert "CORRUPTED (sha256" in result.stdout and "EDITED (params)" in result.stdout
        assert "warning: wine v1: checkpoint CORRUPTED" in result.stderr
        assert "selfimprove rollback wine" in result.stderr
    (row,) = json.loads(cli("models", "--json", "--home", str(home)).stdout)
    assert row["checkpoint"].startswith("CORRUPTED") and row["manifest"] == "EDITED (params)"
    ckpt.unlink()
    assert json.loads(cli("models", "--json", "--home", str(home)).stdout)[0]["checkpoint"] == (
        "missing"
    )


def test_a_read_only_home_still_answers_status_models_and_history(home: Path) -> None:
    before = snapshot(home)
    with read_only(home):
        for command in ("status", "models", "history", "export"):
            result = cli(command, "--home", str(home))
            assert result.exit_code == 0, (command, result.output)
        assert "wine" in cli("models", "--home", str(home)).stdout
        assert "read from a copy" in cli("status", "--home", str(home)).stdout
        refused(cli("improve", "wine", "--home", str(home)), "not writable")
    assert snapshot(home) == before


def test_run_refuses_an_unknown_model_before_anything_runs(home: Path) -> None:
    before = snapshot(home)
    refused(cli("run", "-m", "nope", "--home", str(home)), "unknown model 'nope'")
    assert snapshot(home) == before
    with SelfImprover(home, read_only=True) as si:
        assert si.store.list_experiments() == []
