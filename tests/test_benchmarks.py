"""Smoke test of the benchmark runners: each runs in its tiny configuration, writes JSON of the
shared schema, and ``RESULTS.md`` is generated from it (so the runners do not rot)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import (
    compression,
    head_pruning,
    honesty,
    improvement,
    overhead,
    report,
    two_objectives,
)
from benchmarks._common import SCHEMA, hypervolume_2d, pareto_front, setup

RUNNERS = {
    "improvement": improvement,
    "two_objectives": two_objectives,
    "head_pruning": head_pruning,
    "compression": compression,
    "overhead": overhead,
    "honesty": honesty,
}
TOP_KEYS = {
    "schema",
    "benchmark",
    "section",
    "title",
    "mode",
    "command",
    "started_at",
    "wall_seconds",
    "versions",
    "machine",
    "seeds",
    "budgets",
    "settings",
    "results",
    "tables",
    "targets",
    "not_run",
    "notes",
}


def _check_schema(data: dict[str, Any], name: str) -> None:
    assert set(data) >= TOP_KEYS, f"missing keys: {TOP_KEYS - set(data)}"
    assert data["schema"] == SCHEMA
    assert data["benchmark"] == name
    assert data["mode"] == "smoke"
    assert f"benchmarks.{name}" in data["command"]
    for key in ("python", "torch", "optuna", "selfimprove_commit"):
        assert key in data["versions"]
    for key in ("cpu_count", "cpu_model", "load_average_start", "load_average_end"):
        assert key in data["machine"]
    assert data["seeds"] and data["budgets"] and data["results"]
    for table in data["tables"]:
        assert 1 <= table["section"] <= 6
        assert all(len(row) == len(table["columns"]) for row in table["rows"]), table["title"]
    for target in data["targets"]:
        assert target["met"] in (True, False, None)
        assert target["measured"]
    for item in data["not_run"]:
        assert item["reason"]


def test_every_runner_writes_its_json_and_the_report_is_generated(tmp_path: Path) -> None:
    setup()
    out, work = tmp_path / "results", tmp_path / "work"
    t0 = time.perf_counter()
    for name, module in RUNNERS.items():
        cfg = module.Config.for_mode("smoke")
        argv = [f"benchmarks.{name}", "--mode", "smoke"]
        if name == "head_pruning":
            path = module.run(cfg, argv, out, work, tmp_path / "cache")
        else:
            path = module.run(cfg, argv, out, work)
        assert path == out / f"{name}.smoke.json"
        _check_schema(json.loads(path.read_text()), name)
    assert time.perf_counter() - t0 < 120  # the budget is 30 s on an idle machine

    # The improvement runner's targets can be re-derived from the stored per-seed results.
    imp = out / "improvement.smoke.json"
    before = json.loads(imp.read_text())
    # FLAML is a peer beside TPE: run (when importable) or listed as not run, with the reason.
    if improvement.flaml_available() is None:
        flaml = before["results"]["tasks"]["digits"]["methods"]["flaml_cfo"]["per_seed"]["0"]
        assert 0 < flaml["epochs"] <= before["budgets"]["supervised"]
        columns = before["tables"][0]["columns"]
        assert "engine / FLAML test error (median of per-seed ratios)" in columns
        assert any("FLAML's" in t["target"] for t in before["targets"])
    else:
        assert any(item["what"] == "FLAML CFO" for item in before["not_run"])
    assert improvement.main(["--rederive", str(imp)]) == 0
    after = json.loads(imp.read_text())
    assert after["results"] == before["results"] and after["tables"] == before["tables"]
    assert [t["target"] for t in after["targets"]] == [t["target"] for t in before["targets"]]
    assert after["notes"][:-1] == before["notes"]
    assert after["notes"][-1].startswith("targets re-derived from the stored per-seed results")
    _check_schema(after, "improvement")

    md = tmp_path / "RESULTS.md"
    assert report.main(["--results", str(out), "--out", str(md)]) == 0
    text = md.read_text()
    for number, title in report.SECTIONS.items():
        assert f"## {number}. {title}" in text
    for name in RUNNERS:
        assert f"`{name}.smoke.json`" in text
    assert "## Targets of the issue" in text
    assert "do not edit by hand" in text


def test_flaml_missing_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flaml", None)  # import flaml raises ImportError
    reason = improvement.flaml_available()
    assert reason is not None and reason.startswith("flaml cannot be imported here")


def test_report_refuses_a_file_of_another_schema(tmp_path: Path) -> None:
    (tmp_path / "x.smoke.json").write_text(json.dumps({"schema": "other/0"}))
    with pytest.raises(report.ReportError, match="schema"):
        report.load_results(tmp_path)
    assert report.main(["--results", str(tmp_path), "--out", str(tmp_path / "R.md")]) == 2


def test_hypervolume_and_pareto_front_of_known_points() -> None:
    points = [(0.1, 3.0), (0.2, 2.0), (0.3, 1.0), (0.3, 3.0)]
    assert pareto_front(points) == [0, 1, 2]
    # Staircase under the reference (1, 4): 0.9*1 + 0.8*1 + 0.7*1
    assert hypervolume_2d(points, (1.0, 4.0)) == pytest.approx(2.4)
    assert hypervolume_2d([(2.0, 5.0)], (1.0, 4.0)) == 0.0


def test_the_scale_runner_writes_its_json(tmp_path: Path) -> None:
    """The scale runner (a local Ray cluster, Ray Tune, Optuna) in its smoke configuration:
    both executors made the same decisions, and every figure of its tables is there."""
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed")
    from benchmarks import scale

    setup()
    argv = ["benchmarks.scale", "--mode", "smoke"]
    path = scale.run(scale.Config.for_mode("smoke"), argv, tmp_path / "out", tmp_path / "work")
    data = json.loads(path.read_text())
    assert set(data) >= TOP_KEYS and data["benchmark"] == "scale" and data["section"] == 8
    results = data["results"]
    assert results["same_decisions"] is True
    assert results["local"]["experiments"] == results["ray"]["experiments"] == 2
    assert all(v > 0 for v in results["per_trivial_task_s"].values())
    assert results["projection"]["bottleneck"] in ("drivers", "workers")
    assert [t["section"] for t in data["tables"]] == [8, 8, 8]


def test_the_distillation_runner_writes_its_json(tmp_path: Path) -> None:
    """Soft targets alone vs soft targets + hints, and vs soft targets + attention transfer on a
    pruned GPT-2 (section 9), in its smoke configuration: one student per weight, each the size
    of the student, and each default's verdict."""
    from benchmarks import distillation

    setup()
    cfg = distillation.Config.for_mode("smoke")
    argv = ["benchmarks.distillation", "--mode", "smoke"]
    path = distillation.run(cfg, argv, tmp_path / "out", tmp_path / "work")
    data = json.loads(path.read_text())
    assert set(data) >= TOP_KEYS and data["benchmark"] == "distillation" and data["section"] == 9
    (setting,) = cfg.settings
    seed = data["results"]["settings"][setting.key]["per_seed"]["0"]
    assert list(seed["arms"]) == ["0", *(f"{w:g}" for w in cfg.hint_weights)]
    assert [a["hints_used"] for a in seed["arms"].values()] == [False, True]
    assert len({a["parameters"] for a in seed["arms"].values()}) == 1  # no regressor kept
    assert all(a["epochs"] == cfg.student_epochs for a in seed["arms"].values())
    decision = data["results"]["decision"]
    assert decision["product_default"] == distillation.DEFAULT_HINT_WEIGHT
    assert [t["section"] for t in data["tables"]] == [9, 9]
    for table in data["tables"]:
        assert all(len(r) == len(table["columns"]) for r in table["rows"])
    assert data["targets"][0]["met"] is (
        decision["supported_default"] == decision["product_default"]
    )
    attention = data["results"]["attention"]
    lm_seed = attention["per_seed"]["0"]
    assert list(lm_seed["arms"]) == ["labels", "0", *(f"{w:g}" for w in cfg.lm.attention_weights)]
    assert [a["attention_used"] for a in lm_seed["arms"].values()] == [False, False, True]
    assert all(a["steps"] == cfg.lm.steps for a in lm_seed["arms"].values())
    # Every student keeps the pruned heads of the incumbent.
    kept = lm_seed["pruned"]["heads_per_layer"]
    assert sum(kept) < sum([cfg.lm.arch["n_head"]] * cfg.lm.arch["n_layer"])
    assert all(a["heads_per_layer"] == kept for a in lm_seed["arms"].values())
    lm_decision = attention["decision"]
    assert lm_decision["product_default"] == distillation.DEFAULT_ATTENTION_WEIGHT
    assert data["targets"][1]["met"] is (
        lm_decision["supported_default"] == lm_decision["product_default"]
    )
    md = tmp_path / "RESULTS.md"
    assert report.main(["--results", str(tmp_path / "out"), "--out", str(md)]) == 0
    title = "## 9. Distillation: soft targets, feature hints and attention transfer"
    assert title in md.read_text()
