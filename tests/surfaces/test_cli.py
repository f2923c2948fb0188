"""The CLI as a user runs it: real subprocesses of the installed ``selfimprove`` command."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from selfimprove.store import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SELFIMPROVE_")}
    base["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "selfimprove", *args],
        env={**base, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    text = " ".join(lines)
    assert text.startswith("error:"), proc.stderr
    for needle in needles:
        assert needle in text


@pytest.fixture(scope="module")
def ran_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after a short real run of the built-in default."""
    home = tmp_path_factory.mktemp("cli") / "home"
    proc = cli(
        "run",
        "--home",
        str(home),
        "--cycles",
        "2",
        "--epochs",
        "15",
        "-m",
        "pattern_recognition",
        "-m",
        "neural_sort",
    )
    assert proc.returncode == 0, proc.stderr
    assert "registered pattern_recognition, neural_sort, hormone_response" in proc.stderr
    for word in ("pattern_recognition", "neural_sort", "validation", "test", "promoted"):
        assert word in proc.stdout
    return home


def _snapshot(home: Path) -> str:
    proc = cli("export", "--home", str(home), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    data.pop("exported_at")
    return json.dumps(data, sort_keys=True)


def test_status_models_history_export(ran_home: Path) -> None:
    status = json.loads(cli("status", "--home", str(ran_home), "--json").stdout)
    assert status["models"] == 5 and status["experiments"] == 4 and status["last_cycle"] == 2
    models = json.loads(cli("models", "--home", str(ran_home), "--json").stdout)
    assert {m["name"] for m in models} == {
        "pattern_recognition",
        "neural_sort",
        "hormone_response",
        "trigger_activation",
        "memory_consolidation",
    }
    hist = json.loads(
        cli("history", "pattern_recognition", "--home", str(ran_home), "--json").stdout
    )
    assert len(hist) == 2 and all(h["model"] == "pattern_recognition" for h in hist)
    assert all("test_after" in h["statistics"] for h in hist)
    table = cli("history", "--home", str(ran_home))
    assert table.returncode == 0 and "pattern_recognition" in table.stdout
    rows = list(
        csv.DictReader(io.StringIO(cli("export", "--home", str(ran_home), "-f", "csv").stdout))
    )
    assert len(rows) == 4 and {"decision", "p_value", "test_after"} <= set(rows[0])


def test_export_to_file(ran_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "ledger.json"
    proc = cli("export", "--home", str(ran_home), "--out", str(out))
    assert proc.returncode == 0
    data = json.loads(out.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and len(data["experiments"]) == 4


def test_rollback_restores_previous_sha(tmp_path: Path, ran_home: Path) -> None:
    home = tmp_path / "copy"
    shutil.copytree(ran_home, home)
    models = {m["name"]: m for m in json.loads(cli("models", "--home", str(home), "--json").stdout)}
    current = models["pattern_recognition"]["incumbent"]
    assert current > 1  # at least one promotion happened in the run
    proc = cli("rollback", "pattern_recognition", "--home", str(home))
    assert proc.returncode == 0, proc.stderr
    assert f"v{current} →" in proc.stdout
    after = {m["name"]: m for m in json.loads(cli("models", "--home", str(home), "--json").stdout)}
    assert after["pattern_recognition"]["incumbent"] < current


def test_unknown_model_is_one_clear_line_and_changes_nothing(ran_home: Path) -> None:
    before = _snapshot(ran_home)
    assert_clean_error(cli("rollback", "nope", "--home", str(ran_home)), "unknown model 'nope'")
    assert_clean_error(
        cli("rollback", "pattern_recognition", "--to", "99", "--home", str(ran_home)),
        "no version 99",
    )
    assert_clean_error(cli("history", "nope", "--home", str(ran_home)), "unknown model")
    assert_clean_error(cli("run", "--home", str(ran_home), "-m", "nope"), "unknown model")
    assert _snapshot(ran_home) == before


def test_bad_export_format(ran_home: Path) -> None:
    assert_clean_error(cli("export", "--home", str(ran_home), "-f", "xml"), "json, csv")


def test_unwritable_home(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_clean_error(cli("status", "--home", str(blocker / "sub")), "--home")
    assert_clean_error(cli("status", "--home", str(blocker)), "is a file")


def test_malformed_database_url(tmp_path: Path) -> None:
    proc = cli("status", "--home", str(tmp_path), env={"SELFIMPROVE_DB": "::not a url::"})
    assert_clean_error(proc, "malformed database URL", "SELFIMPROVE_DB")


def test_store_from_newer_schema_is_refused(tmp_path: Path, ran_home: Path) -> None:
    home = tmp_path / "newer"
    shutil.copytree(ran_home, home)
    with sqlite3.connect(home / "selfimprove.db") as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    assert_clean_error(cli("status", "--home", str(home)), "schema version 999")


def test_corrupted_checkpoint_is_reported_and_model_left_alone(
    tmp_path: Path, ran_home: Path
) -> None:
    home = tmp_path / "corrupt"
    shutil.copytree(ran_home, home)
    models = {m["name"]: m for m in json.loads(cli("models", "--home", str(home), "--json").stdout)}
    inc = models["neural_sort"]["incumbent"]
    ckpt = home / "models" / "neural_sort" / f"v{inc}" / "model.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[: len(ckpt.read_bytes()) // 2])
    proc = cli(
        "run",
        "--home",
        str(home),
        "--cycles",
        "1",
        "--epochs",
        "5",
        "--json",
        "-m",
        "pattern_recognition",
        "-m",
        "neural_sort",
    )
    assert proc.returncode == 0, proc.stderr
    outcomes = {o["model"]: o for o in json.loads(proc.stdout)}
    assert outcomes["neural_sort"]["status"] == "skipped"
    assert "corrupted or truncated" in outcomes["neural_sort"]["reason"]
    assert outcomes["pattern_recognition"]["status"] in ("completed", "skipped")
    after = {m["name"]: m for m in json.loads(cli("models", "--home", str(home), "--json").stdout)}
    assert after["neural_sort"]["incumbent"] == inc
    assert_clean_error(
        cli("rollback", "neural_sort", "--to", str(inc), "--home", str(home)),
        "already the incumbent",
    )


@pytest.mark.parametrize(
    "command", ["run", "improve", "status", "models", "history", "rollback", "export"]
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    proc = cli(command, "--help")
    assert proc.returncode == 0 and "Example: selfimprove" in proc.stdout


def test_usage_error_exits_2() -> None:
    assert cli("run", "--cycles", "0").returncode == 2


def test_improve_runs_one_judged_experiment(tmp_path: Path, ran_home: Path) -> None:
    home = tmp_path / "improve"
    shutil.copytree(ran_home, home)
    proc = cli(
        "improve",
        "neural_sort",
        "-s",
        "retrain",
        "--budget-epochs",
        "10",
        "--home",
        str(home),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["strategy"] == "retrain" and out["status"] == "completed"
    assert out["decision"] in ("promote", "reject") and out["test_after"] is not None


def test_improve_with_unknown_or_inapplicable_strategy(ran_home: Path) -> None:
    before = _snapshot(ran_home)
    assert_clean_error(
        cli("improve", "neural_sort", "-s", "nope", "--home", str(ran_home)),
        "unknown strategy 'nope'",
    )
    assert_clean_error(
        cli("improve", "neural_sort", "--objective", "size_bytes", "--home", str(ran_home)),
        "train does not apply to neural_sort",
        "size_bytes",
    )
    assert_clean_error(
        cli("improve", "neural_sort", "-p", "lr", "--home", str(ran_home)), "KEY=VALUE"
    )
    assert _snapshot(ran_home) == before


def test_numbers_past_what_the_store_and_the_arithmetic_hold_are_refused(ran_home: Path) -> None:
    home = ["--home", str(ran_home)]
    before = cli("export", "--format", "json", *home)
    assert before.returncode == 0
    for args in (
        ("history", "--limit", "99999999999999999999999"),
        ("rollback", "pattern_recognition", "--to", str(2**63)),
        ("improve", "pattern_recognition", "--budget-epochs", "9" * 400),
        ("improve", "pattern_recognition", "--budget-seconds", "1e300"),
        ("engine", "approve", "99999999999999999999"),
        ("engine", "experiments", "--limit", "10000000"),
    ):
        proc = cli(*args, *home)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "Invalid value" in proc.stderr, args
    after = cli("export", "--format", "json", *home)

    def ledger(text: str) -> dict[str, object]:
        data = json.loads(text)
        data.pop("exported_at", None)  # when the export ran, not what the ledger holds
        return data

    assert ledger(after.stdout) == ledger(before.stdout)  # nothing recorded
