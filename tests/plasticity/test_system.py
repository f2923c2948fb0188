"""AdaptivePlasticitySystem on ``tiny``: real cycles, real measurements, real undo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from selfimprove.checkpoints import sha256_hex
from selfimprove.errors import ConfigError
from selfimprove.nn.modules import state_to_bytes
from selfimprove.plasticity import (
    AdaptivePlasticitySystem,
    Transformation,
    TransformationMemory,
    heads_per_layer,
    read_metrics,
)

from .conftest import short_config


def test_short_run_removes_heads_lowers_latency_and_stays_within_tolerance(
    short_run: AdaptivePlasticitySystem,
) -> None:
    r = short_run.results_
    s, f = r.start, r.final
    print(
        f"\nheads {s['heads']} -> {f['heads']} {f['heads_per_layer']}; parameters "
        f"{s['parameters']} -> {f['parameters']}; perplexity {s['perplexity']:.3f} -> "
        f"{f['perplexity']:.3f} (test {s['test_perplexity']:.3f} -> {f['test_perplexity']:.3f}); "
        f"latency batch 1 {f['start_latency_ms']:.3f} -> {f['latency_ms']:.3f} ms, batch "
        f"{f['serving_batch']} {f['start_serving_latency_ms']:.3f} -> "
        f"{f['serving_latency_ms']:.3f} ms; degeneration {s['degeneration']:.3f} -> "
        f"{f['degeneration']:.3f}; efficiency {f['efficiency']:.3f}; reference {r.reference}"
    )
    for c in r.cycles:
        print(
            f"cycle {c.cycle}: {c.pruning_strategy} -{c.heads_pruned} +{c.heads_grown}: {c.reason}"
        )
    assert f["accepted_cycles"] >= 1
    assert f["heads"] < s["heads"] and sum(f["heads_per_layer"]) == f["heads"]
    assert f["parameters"] < s["parameters"]
    assert f["serving_latency_ms"] < f["start_serving_latency_ms"]  # timed interleaved
    assert f["perplexity"] <= s["perplexity"] * (1 + short_run.config.perplexity_tolerance)
    assert f["degeneration"] <= short_run.config.degeneration_threshold
    assert heads_per_layer(short_run.model_) == f["heads_per_layer"]
    # Efficiency the right way up: fewer heads at the same perplexity is > 1.
    assert f["efficiency"] > 1.0
    assert r.reference is not None and r.reference["finetune_steps"] == 40 * f["accepted_cycles"]


def test_growth_was_function_preserving_in_every_cycle(short_run: AdaptivePlasticitySystem) -> None:
    records = read_metrics(short_run.results_.run_dir)
    grows = [r for r in records if r["phase"] == "grow"]
    assert grows and all(r["max_logit_change"] <= 1e-4 for r in grows)
    measures = {r["cycle"]: r["perplexity"] for r in records if r["phase"] == "measure"}
    for g in grows:
        assert g["perplexity"] == pytest.approx(measures[g["cycle"]], rel=1e-5)


def test_run_folder_holds_metrics_checkpoints_summary_and_dashboard(
    short_run: AdaptivePlasticitySystem,
) -> None:
    run_dir = short_run.results_.run_dir
    assert run_dir.name.startswith("run_")
    records = read_metrics(run_dir)
    phases = [(r["cycle"], r["phase"]) for r in records]
    assert phases[0] == (0, "baseline") and phases[-1] == (0, "final")
    for c in (1, 2):
        assert [p for cyc, p in phases if cyc == c] == [
            "prune",
            "measure",
            "forecast",
            "grow",
            "learn",
            "decision",
        ]
    learn = next(r for r in records if r["phase"] == "learn")
    for key in ("perplexity", "degeneration", "heads_per_layer", "parameters", "latency_ms"):
        assert learn[key] is not None, key
    prune = next(r for r in records if r["phase"] == "prune")
    assert prune["strategy"] and len(prune["importance"]["scores"]) == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]["heads"] == short_run.results_.final["heads"]
    assert (run_dir / "dashboard.html").stat().st_size > 1_000_000  # plotly.js inlined
    assert (run_dir / "checkpoints" / "cycle_000.safetensors").is_file()


def test_rejected_cycle_restores_the_previous_weights_exactly(
    tiny_home: Path, tmp_path: Path, tiny: torch.nn.Module
) -> None:
    # No tolerance and half the heads gone without fine-tuning: the cycle must be rejected.
    config = short_config(
        perplexity_tolerance=0.0,
        finetune_steps=0,
        measure_reference=False,
        dashboard=False,
        use_memory=False,
    )
    system = AdaptivePlasticitySystem("tiny", None, tmp_path, config=config, home=tiny_home)
    results = system.run_adaptive_optimization(
        max_cycles=1, initial_pruning_level=0.5, initial_growth_ratio=0.0
    )
    (cycle,) = results.cycles
    print(f"\nrejected as it should be: {cycle.reason}; restored sha256 {cycle.restored_sha256}")
    assert not cycle.accepted and cycle.heads_after == 16
    assert cycle.perplexity_after > results.start["perplexity"]
    restored = system.model_
    assert heads_per_layer(restored) == [8, 8, 8, 8]
    before = tiny.state_dict()
    for k, v in restored.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert cycle.restored_sha256 == results.start["sha256"]
    assert sha256_hex(state_to_bytes(restored)) == results.start["sha256"]
    assert results.final["heads"] == 32 and results.final["accepted_cycles"] == 0


def test_memory_recalls_a_success_from_a_similar_state_and_avoids_a_failure(
    tmp_path: Path,
) -> None:
    memory = TransformationMemory(tmp_path / "memory.json")
    ok = Transformation(
        model="tiny",
        run="r1",
        cycle=1,
        head_fractions=[1.0] * 4,
        relative_perplexity=1.0,
        pruning_strategy="gradient",
        pruning_level=0.25,
        growth_strategy="importance",
        growth_ratio=0.25,
        accepted=True,
        reward=0.2,
    )
    bad = Transformation(
        model="tiny",
        run="r1",
        cycle=2,
        head_fractions=[1.0] * 4,
        relative_perplexity=1.0,
        pruning_strategy="gradient",
        pruning_level=0.5,
        growth_strategy="importance",
        growth_ratio=0.0,
        accepted=False,
        reward=-1.0,
    )
    memory.add(ok)
    memory.add(bad)
    again = TransformationMemory(tmp_path / "memory.json")  # survives a new process
    assert again.recall("tiny", [1.0, 1.0, 0.95, 1.0], 1.02) == ok
    assert again.recall("tiny", [0.5] * 4, 1.0) is None
    assert again.recall("other", [1.0] * 4, 1.0) is None
    assert again.failures("tiny", [1.0] * 4, 1.0) == [bad]


def test_bad_arguments_fail_before_anything_runs(tmp_path: Path) -> None:
    system = AdaptivePlasticitySystem("tiny", None, tmp_path)
    with pytest.raises(ConfigError, match="initial_pruning_level"):
        system.run_adaptive_optimization(2, initial_pruning_level=0.9)
    with pytest.raises(ConfigError, match="max_cycles"):
        system.run_adaptive_optimization(0)
    with pytest.raises(ConfigError, match="not available here"):
        AdaptivePlasticitySystem("tiny", None, tmp_path, device="cuda:7").setup()
    assert not list(tmp_path.iterdir())


def test_a_later_run_reuses_the_remembered_transformation(
    short_run: AdaptivePlasticitySystem, tiny_home: Path, tmp_path: Path
) -> None:
    first = short_run.results_.cycles[0]
    assert first.accepted
    config = short_config(finetune_steps=0, measure_reference=False, dashboard=False)
    system = AdaptivePlasticitySystem("tiny", None, tmp_path, config=config, home=tiny_home)
    results = system.run_adaptive_optimization(
        max_cycles=1, initial_pruning_level=0.1, initial_growth_ratio=0.0
    )
    (cycle,) = results.cycles
    assert cycle.choice.startswith("memory: reused")
    assert (cycle.pruning_strategy, cycle.pruning_level) == (
        first.pruning_strategy,
        first.pruning_level,
    )
    assert (cycle.growth_strategy, cycle.growth_ratio) == (
        first.growth_strategy,
        first.growth_ratio,
    )


def test_the_screen_keeps_gradient_unless_another_estimator_is_lower_on_the_probe(
    short_run: AdaptivePlasticitySystem,
) -> None:
    records = read_metrics(short_run.results_.run_dir)
    prunes = [r for r in records if r["phase"] == "prune"]
    assert prunes
    for r in prunes:
        screen = r["screen"]
        assert set(screen) == {"gradient", "entropy", "activation", "magnitude", "random"}
        assert r["strategy"] in screen and r["choice"].startswith(f"pruning {r['strategy']}:")
        if r["strategy"] != "gradient":
            assert screen[r["strategy"]] < screen["gradient"]


def _bare_cycles(
    home: Path, out: Path, tolerance: float, *, cycles: int, level: float, growth: float
) -> tuple[AdaptivePlasticitySystem, Any]:
    """Cycles with no fine-tuning, reference, dashboard, memory or estimator screen."""
    config = short_config(
        perplexity_tolerance=tolerance,
        finetune_steps=0,
        measure_reference=False,
        dashboard=False,
        use_memory=False,
        screen_estimators=False,
    )
    system = AdaptivePlasticitySystem("tiny", None, out, config=config, home=home)
    results = system.run_adaptive_optimization(
        max_cycles=cycles, initial_pruning_level=level, initial_growth_ratio=growth
    )
    return system, results


def test_grown_heads_that_do_not_pay_are_removed_again(tiny_home: Path, tmp_path: Path) -> None:
    # No fine-tuning: the grown heads stay silent (zero output rows), so removing them costs
    # nothing and they must go; the cycle keeps only its pruning.
    system, results = _bare_cycles(tiny_home, tmp_path, 1.0, cycles=1, level=0.25, growth=1.0)
    (cycle,) = results.cycles
    records = read_metrics(results.run_dir)
    grow = next(r for r in records if r["phase"] == "grow")
    learn = next(r for r in records if r["phase"] == "learn")
    assert sum(grow["plan"].values()) == 8  # a quarter of 32 pruned, as many grown
    assert "did not pay" in learn["growth_paid"]
    assert sum(len(v) for v in learn["grown_removed"].values()) == 8
    assert cycle.accepted and cycle.heads_grown == 0
    assert cycle.heads_after == 32 - 8 == sum(heads_per_layer(system.model_))
    assert learn["heads"] == 24 and sum(len(s) for s in learn["slots"]) == 24


def test_a_rejected_cycle_is_retried_in_the_middle_of_the_bracket(
    tiny_home: Path, tmp_path: Path
) -> None:
    _, results = _bare_cycles(tiny_home, tmp_path, 0.0, cycles=2, level=0.5, growth=0.5)
    first, second = results.cycles
    assert not first.accepted and "retry" in first.adaptation
    assert first.heads_target == 16 and "bisect: 0 kept, 16 failed" in first.adaptation
    assert (second.pruning_level, second.heads_pruned, second.heads_target) == (0.25, 8, 8)
    # Without fine-tuning the grown heads stay silent: none paid, so growth stops.
    assert "none of the 8 grown heads paid" in first.adaptation
    assert second.growth_ratio == 0.0
