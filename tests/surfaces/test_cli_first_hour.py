"""A new user's first hour with the command (issue 17): ``--help``, ``--version`` and argument
errors answer without importing torch or the loop; the tables stay readable at 80 columns; a home
without models says how to get some."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

import selfimprove
from selfimprove import SelfImprover, resolve_task
from selfimprove.config import STRATEGY_NAMES
from selfimprove.loop.experiment import ExperimentOutcome
from selfimprove.plasticity import CycleOutcome
from selfimprove.store import CodeImprovementStatus, Decision, ExperimentRecord, ExperimentStatus
from selfimprove.strategies import STRATEGIES
from selfimprove.surfaces.cli.app import _history_table, _models_table, _outcome_table, app
from selfimprove.surfaces.cli.engine import IMPROVEMENT_STATUSES
from selfimprove.surfaces.cli.plasticity import _cycle_table, _decision_table

ROOT = Path(__file__).resolve().parents[2]

#: Modules a command must not import before it knows it has work to do.
HEAVY = (
    "torch",
    "transformers",
    "optuna",
    "plotly",
    "mcp",
    "ray",
    "sqlalchemy",
    "selfimprove.loop",
    "selfimprove.strategies",
    "selfimprove.plasticity",
    "selfimprove.engine",
    "selfimprove.store",
)

#: Runs the typer app in this process for each argv given (a JSON list), then prints, per argv,
#: its exit code and which of the heavy modules were imported by then.
PROBE = r"""
import json, sys
import click, typer
from selfimprove.surfaces.cli import app

heavy, argvs = json.loads(sys.argv[1])

def paths(cmd, prefix):
    yield prefix
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from paths(sub, [*prefix, name])

argvs += [[*p, "--help"] for p in paths(typer.main.get_command(app), [])]
results = []
for argv in argvs:
    try:
        app(args=argv, prog_name="selfimprove")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    results.append([argv, code, sorted(m for m in heavy if m in sys.modules)])
print("\nPROBE " + json.dumps(results))
"""

#: Argument errors (exit code 2), each refused before any heavy import.
ARGUMENT_ERRORS = [
    ["nosuch"],
    ["run", "--cycles", "0"],
    ["run", "--bogus"],
    ["improve"],
    ["improve", "m", "--param", "no-equals-sign"],
    ["history", "--limit", "many"],
    ["export", "--format", "xml"],
    ["engine", "show", "0"],
    ["engine", "improvements", "--status", "nope"],
    ["plasticity", "run", "--cycles", "0"],
    ["plasticity", "visualize"],
]


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SELFIMPROVE_")}
    return {**base, **extra}


def test_help_version_and_argument_errors_import_no_heavy_module() -> None:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([HEAVY, [["--version"], *ARGUMENT_ERRORS]])],
        env=_env(COLUMNS="100"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - started
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("PROBE "), proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(line[len("PROBE ") :])
    helps = [argv for argv, _, _ in results if argv[-1:] == ["--help"]]
    assert ["--help"] in helps and ["plasticity", "run", "--help"] in helps
    assert ["engine", "approve", "--help"] in helps and len(helps) >= 20
    for argv, code, imported in results:
        expected = 2 if argv in ARGUMENT_ERRORS else 0
        assert code == expected, (argv, code, proc.stderr[-2000:])
        assert imported == [], (argv, imported)
    assert f"selfimprove {selfimprove.__version__}\n" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == len(ARGUMENT_ERRORS)
    print(f"{len(results)} invocations in {seconds:.2f} s")  # shown with pytest -s


def test_version_from_the_installed_entry_point_and_importtime() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "selfimprove", "--version"],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == f"selfimprove {selfimprove.__version__}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "selfimprove.surfaces.cli.app" in imported  # the probe saw the real import log
    assert not {"torch", "transformers", "sqlalchemy"} & imported


def test_light_copies_of_names_match_their_tables() -> None:
    assert tuple(STRATEGIES) == STRATEGY_NAMES
    assert tuple(s.value for s in CodeImprovementStatus) == IMPROVEMENT_STATUSES


# ----- 80 columns -------------------------------------------------------------------------


def _render(table: Table, width: int) -> list[str]:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text().splitlines()


def _header_cells(lines: list[str]) -> list[str]:
    """The header row's cells (the line between ┏ and ┡, one-line headers)."""
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    return [cell.strip() for cell in lines[top + 1].strip("┃").split("┃")]


def _rows(lines: list[str]) -> list[list[str]]:
    """Each body line's cells."""
    return [[c.strip() for c in line.strip("│").split("│")] for line in lines if line[:1] == "│"]


def _column(lines: list[str], index: int) -> str:
    """A column's text, its lines joined by spaces."""
    return " ".join(row[index] for row in _rows(lines) if row[index])


OUTCOMES = [
    ExperimentOutcome(
        model="memory_consolidation",
        cycle=1,
        strategy="grow",
        objective="mse",
        status="completed",
        decision=Decision.PROMOTE,
        reason="mse 0.6139 → 0.01086 on validation: error −98.2%, paired_bootstrap p=0.0005",
        before=0.6139,
        after=0.01086,
        test_before=0.6136,
        test_after=0.01076,
        p_value=0.0005,
    ),
    ExperimentOutcome(
        model="pattern_recognition",
        cycle=12,
        strategy="quantize",
        objective="latency_ms",
        status="completed",
        decision=Decision.REJECT,
        reason="latency_ms 0.2 → 0.19 on validation: error −5.0%, below the 10% threshold",
        before=0.2,
        after=0.19,
        test_before=0.21,
        test_after=0.2,
        p_value=0.31,
    ),
    ExperimentOutcome(
        model="neural_sort",
        cycle=3,
        strategy="tune",
        objective="mse",
        status="failed",
        decision=None,
        reason="budget exceeded after 75 s",
        before=0.003,
    ),
]


def test_run_table_at_80_columns_keeps_cycle_and_decision() -> None:
    lines = _render(_outcome_table(OUTCOMES, width=80), 80)
    assert max(map(len, lines)) <= 80
    assert _header_cells(lines) == ["cycle", "model · strategy", "validation / test", "decision"]
    assert [row[0] for row in _rows(lines) if row[0]] == ["1", "12", "3"]
    decisions = _column(lines, 3)
    for text in (
        "promoted: error −98.2%, paired_bootstrap p=0.0005",
        "rejected: error −5.0%, below the 10% threshold",
        "failed: budget exceeded after 75 s",
    ):
        assert text in decisions
    assert "0.6139 → 0.01086" in _column(lines, 2)  # validation, then test below it
    assert "0.6136 → 0.01076" in _column(lines, 2)
    # Wide terminals keep one line per outcome with every column.
    wide = _render(_outcome_table(OUTCOMES, width=200), 200)
    assert _header_cells(wide)[-2:] == ["p", "decision"] and len(_rows(wide)) == 3


def _record(i: int, reason: str, decision: Decision | None, **stats: float) -> ExperimentRecord:
    now = datetime(2026, 1, 1)
    return ExperimentRecord(
        id=i,
        model_id=1,
        capability_id=None,
        strategy="evolve",
        objective="mse",
        params={},
        hypothesis="",
        cycle=i,
        seed=0,
        status=ExperimentStatus.COMPLETED if decision else ExperimentStatus.FAILED,
        decision=decision,
        reason=reason,
        statistics=stats,
        incumbent_version_id=None,
        candidate_version_id=None,
        compute={},
        durations={},
        created_at=now,
        started_at=now,
        finished_at=now,
    )


def test_history_at_80_columns_does_not_wrap_reasons_word_by_word() -> None:
    records = [
        _record(
            2,
            "mse 0.01186 → 0.003559 on validation: error −70.0%, paired_bootstrap p=0.0005",
            Decision.PROMOTE,
            before=0.01186,
            after=0.003559,
            test_before=0.01285,
            test_after=0.003804,
            p_value=0.0005,
        ),
        _record(1, "diverged: loss is nan at epoch 3", None),
    ]
    lines = _render(_history_table(records, {1: "neural_sort"}, width=80), 80)
    assert max(map(len, lines)) <= 80
    assert _header_cells(lines)[-1] == "decision"
    reasons = [row[3] for row in _rows(lines) if row[3]]
    assert len(reasons) <= 4  # two records, at most two lines each
    assert all(len(r.split()) >= 2 for r in reasons[:-1])  # never one word a line
    assert "promoted: error −70.0%, paired_bootstrap p=0.0005" in _column(lines, 3)
    assert "failed: diverged: loss is nan at epoch 3" in _column(lines, 3)
    assert "evolve · cycle 2" in _column(lines, 1)


def test_plasticity_tables_at_80_columns_have_every_header() -> None:
    cycle = CycleOutcome(
        cycle=1,
        accepted=True,
        reason="perplexity 5.701 <= limit 5.966 (start 5.682 + 5%); degeneration 0.022 <= 0.350",
        choice="",
        pruning_strategy="activation",
        pruning_level=0.2,
        growth_strategy="gradient_sensitivity",
        growth_ratio=0.5,
        heads_before=32,
        heads_pruned=6,
        heads_grown=1,
        heads_after=27,
        heads_per_layer=[7, 6, 6, 8],
        perplexity_before=5.682,
        perplexity_pruned=5.7431234,
        perplexity_grown=5.7431234,
        perplexity_after=5.7012345,
        test_perplexity_after=8.0812345,
        degeneration=0.022,
        parameters_after=801_296,
        latency_before_ms=4.29,
        latency_after_ms=4.15,
        serving_latency_before_ms=29.7,
        serving_latency_after_ms=28.1,
        reward=0.151,
        adaptation="",
    )
    for width in (80, 200):
        lines = _render(_cycle_table([cycle], width=width), width)
        assert max(map(len, lines)) <= width
        headers = _header_cells(lines)
        assert all(headers) and "decision" in headers and "reward" in headers
        assert "5.743 → 5.701" in lines[-2] and "accepted" in lines[-2]
    assert "latency ms" in headers  # the wide layout has every column
    decisions = [
        {"cycle": 1, "accepted": False, "heads": 27, "reward": -0.5, "reason": cycle.reason}
    ]
    lines = _render(_decision_table("run_x", decisions, width=80), 80)
    assert max(map(len, lines)) <= 80 and all(_header_cells(lines))
    assert cycle.reason in _column(lines, 4)


def test_models_table_at_80_columns_names_a_damaged_file() -> None:
    row = {
        "name": "memory_consolidation",
        "task": "memory_consolidation",
        "incumbent": 2,
        "versions": 3,
        "strategy": "grow",
        "metrics": {"validation_mse": 0.010861234, "test_mse": 0.0107612},
        "sha256": "83be79854686" * 5,
        "checkpoint": "missing",
        "manifest": "ok",
    }
    lines = _render(_models_table([row, {**row, "name": "b", "checkpoint": "ok"}], width=80), 80)
    assert max(map(len, lines)) <= 80 and all(_header_cells(lines))
    assert "v2 of 3 grow" in _column(lines, 1)
    assert "mse 0.01086 mse 0.01076" in _column(lines, 2)
    assert _column(lines, 3) == "checkpoint missing ok"  # the damaged file named, then "ok"
    wide = _render(_models_table([row], width=200), 200)
    assert "sha256" in _header_cells(wide) and "83be79854686" in wide[-2]


# ----- a real home at 80 columns, and a home without models --------------------------------


def test_improve_at_80_columns_in_a_subprocess(tmp_path: Path) -> None:
    home = tmp_path / "home"
    task = resolve_task("neural_sort")
    torch.manual_seed(0)
    with SelfImprover(home=home, seed=0) as si:
        params = task.initial_params()
        si.register_model("sorter", "neural_sort", task.build(params), params)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "selfimprove", "improve", "sorter", "--home", str(home)),
            *("--budget-epochs", "1", "--budget-seconds", "5"),
        ],
        env=_env(COLUMNS="80"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert max(map(len, lines)) <= 80, proc.stdout
    assert _header_cells(lines) == ["cycle", "model · strategy", "validation / test", "decision"]
    assert re.search(r"(promoted|rejected): error [−+]\d", _column(lines, 3)), proc.stdout
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr
    with SelfImprover(home=home, read_only=True) as si:
        records, names = si.history(None, 10), {m.id: m.name for m in si.store.list_models()}
    history = _render(_history_table(records, names, width=80), 80)
    assert "sorter" in _column(history, 1) and "train · cycle 1" in _column(history, 1)
    assert math.isfinite(records[0].statistics["after"])


def test_a_home_without_models_says_to_run_first(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    SelfImprover(home=home).close()
    runner = CliRunner()
    result = runner.invoke(app, ["improve", "pattern_recognition", "--home", str(home)])
    assert result.exit_code == 2
    assert f"run `selfimprove run --home {home}`" in " ".join(result.stderr.split())
    result = runner.invoke(app, ["status", "--home", str(home)])
    assert result.exit_code == 0
    assert "no models yet: run `selfimprove run" in " ".join(result.stdout.split())
