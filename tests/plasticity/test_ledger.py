"""Plasticity cycles in the one store: a model per run, an experiment per cycle, a version per
kept cycle pointing at the checkpoint the run wrote; `selfimprove history` / `export` show them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from selfimprove.checkpoints import sha256_hex
from selfimprove.measure.lm_judge import CycleFigures, judge_cycle
from selfimprove.plasticity import AdaptivePlasticitySystem
from selfimprove.store import Store
from selfimprove.store.records import Decision, ExperimentStatus, VersionStatus
from selfimprove.surfaces.cli.app import app

from .conftest import short_config

runner = CliRunner()


def test_each_cycle_is_an_experiment_and_each_kept_cycle_a_version(
    tiny_home: Path, tmp_path: Path
) -> None:
    # No tolerance and half the heads: the first cycle is rejected, the retry at a quarter
    # is judged on its own figures. The store is given, so the run writes to that object.
    config = short_config(
        perplexity_tolerance=0.0,
        finetune_steps=0,
        measure_reference=False,
        dashboard=False,
        use_memory=False,
        screen_estimators=False,
    )
    store = Store(home=tmp_path / "ledger")
    system = AdaptivePlasticitySystem(
        "tiny", None, tmp_path / "runs", config=config, home=tiny_home, store=store
    )
    results = system.run_adaptive_optimization(
        max_cycles=2, initial_pruning_level=0.5, initial_growth_ratio=0.5
    )
    (model,) = store.list_models()
    assert model.family == "gpt2" and model.name == f"tiny:{results.run_dir.name}"
    experiments = store.list_experiments(model_id=model.id)
    assert [e.cycle for e in experiments] == [c.cycle for c in results.cycles] == [1, 2]
    for e, c in zip(experiments, results.cycles, strict=True):
        assert e.strategy == "plasticity" and e.status is ExperimentStatus.COMPLETED
        assert e.decision is (Decision.PROMOTE if c.accepted else Decision.REJECT)
        assert e.reason == c.reason
        st = e.statistics
        assert (st["before"], st["after"]) == (c.perplexity_before, c.perplexity_after)
        assert st["start_perplexity"] == results.start["perplexity"]
        assert (st["heads_removed"], st["heads_grown"], st["level"]) == (
            c.heads_pruned,
            c.heads_grown,
            c.pruning_level,
        )
        assert (e.candidate_version_id is not None) == c.accepted
    assert experiments[0].decision is Decision.REJECT

    versions = store.list_versions(model.id)
    kept = [c.cycle for c in results.cycles if c.accepted]
    assert [v.number for v in versions] == list(range(1, 2 + len(kept)))
    assert versions[0].origin == "start" and versions[0].sha256 == results.start["sha256"]
    for v, cycle in zip(versions, [0, *kept], strict=True):
        weights = results.run_dir / "checkpoints" / f"cycle_{cycle:03d}.safetensors"
        assert v.checkpoint_path == str(weights)
        assert v.sha256 == sha256_hex(weights.read_bytes())
    incumbent = store.version_by_id(store.get_model(model.name).incumbent_version_id or -1)
    assert incumbent.number == len(versions) and incumbent.status is VersionStatus.INCUMBENT
    assert incumbent.sha256 == results.final["sha256"]
    store.close()


def test_history_and_export_show_the_cycles_of_a_run(
    short_run: AdaptivePlasticitySystem, tiny_home: Path
) -> None:
    results = short_run.results_
    name = f"tiny:{results.run_dir.name}"
    shown = runner.invoke(app, ["history", name, "--home", str(tiny_home), "--json"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert sorted(r["cycle"] for r in rows) == [c.cycle for c in results.cycles]
    assert {r["strategy"] for r in rows} == {"plasticity"} and {r["model"] for r in rows} == {name}
    assert results.reference is not None
    for r in rows:
        assert r["statistics"]["reference_perplexity"] == results.reference["perplexity"]
    exported = runner.invoke(app, ["export", "--home", str(tiny_home)])
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.output)
    (model,) = [m for m in data["models"] if m["name"] == name]
    assert len(model["versions"]) == 1 + sum(c.accepted for c in results.cycles)
    assert sum(e["model"] == name for e in data["experiments"]) == len(results.cycles)


def test_the_rule_keeps_a_cycle_within_tolerance_and_gives_its_reason() -> None:
    base = {"perplexity_start": 10.0, "tolerance": 0.05, "degeneration_threshold": 0.5}
    kept = judge_cycle(CycleFigures(perplexity_after=10.4, degeneration=0.1, **base))
    assert kept.accepted and kept.decision is Decision.PROMOTE
    assert kept.limit == 10.5 and abs(kept.margin - 0.2) < 1e-9
    assert kept.reason.startswith("perplexity 10.4 <= limit 10.5")
    too_high = judge_cycle(CycleFigures(perplexity_after=10.6, degeneration=0.1, **base))
    assert not too_high.accepted and too_high.margin == 0.0 and "> limit" in too_high.reason
    degenerate = judge_cycle(CycleFigures(perplexity_after=9.0, degeneration=0.6, **base))
    assert not degenerate.accepted and degenerate.margin == 1.0
    assert "degeneration 0.600 > 0.500" in degenerate.reason
    nan = judge_cycle(CycleFigures(perplexity_after=float("nan"), degeneration=0.0, **base))
    assert not nan.accepted
