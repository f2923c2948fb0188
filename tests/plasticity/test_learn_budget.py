"""Issue 18: the learn phase's learning rate runs over the whole run (one warm-up and cosine
decay, each cycle fine-tuning its stretch), as a single fine-tuning of the same steps would; the
unpruned reference follows the kept cycles' steps, batches and rates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from selfimprove.errors import ConfigError
from selfimprove.measure.finetune import FinetuneConfig, _lr_factor
from selfimprove.plasticity import (
    AdaptivePlasticitySystem,
    DegenerationConfig,
    PlasticityConfig,
    PlasticityResults,
)

from .conftest import short_config


def _one_schedule(step: int, steps: int, warm: int) -> float:
    """The single-call schedule as it always was: linear warm-up, cosine to 10 %."""
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def test_one_call_keeps_its_own_schedule() -> None:
    config = FinetuneConfig(steps=100, warmup_steps=10)
    assert [_lr_factor(s, config) for s in range(100)] == pytest.approx(
        [_one_schedule(s, 100, 10) for s in range(100)], abs=1e-12
    )


def test_calls_over_one_schedule_continue_its_decay_after_their_own_warm_up() -> None:
    whole = FinetuneConfig(steps=300, warmup_steps=10)
    for k in range(3):
        part = FinetuneConfig(
            steps=100, warmup_steps=10, schedule_start=100 * k, schedule_steps=300
        )
        warm = min(part.warmup_steps, part.steps // 10 + 1)
        for s in range(100):
            expected = _lr_factor(100 * k + s, whole) if k or s >= warm else 1.0
            local = (s + 1) / warm if s < warm else 1.0
            assert _lr_factor(s, part) == pytest.approx(expected * local, abs=1e-12)
    last = FinetuneConfig(steps=100, warmup_steps=10, schedule_start=200, schedule_steps=300)
    assert _lr_factor(99, last) == pytest.approx(0.1, abs=1e-3)  # the run ends decayed
    assert _lr_factor(99, FinetuneConfig(steps=100, warmup_steps=10)) == pytest.approx(
        0.1, abs=1e-3
    )
    assert _lr_factor(50, last) < 0.25 < _lr_factor(50, FinetuneConfig(steps=100))


@pytest.mark.parametrize(
    ("start", "total"), [(-1, 0), (250, 300), (1, 100)], ids=["negative", "past-end", "overrun"]
)
def test_a_stretch_outside_its_schedule_is_refused(start: int, total: int) -> None:
    with pytest.raises(ConfigError, match="schedule_start"):
        FinetuneConfig(steps=100, schedule_start=start, schedule_steps=total)


def test_the_plasticity_config_places_each_cycle_in_the_run() -> None:
    run = PlasticityConfig(finetune_steps=50)
    third = run.finetune_config(128, cycle=3, cycles=6)
    assert (third.schedule_start, third.schedule_steps, third.steps) == (100, 300, 50)
    per_cycle = PlasticityConfig(finetune_steps=50, lr_schedule="cycle")
    assert per_cycle.finetune_config(128, cycle=3, cycles=6).schedule_start == 0
    assert per_cycle.finetune_config(128, cycle=3, cycles=6).schedule_steps == 0
    with pytest.raises(ConfigError, match="lr_schedule must be one of run, cycle"):
        PlasticityConfig(lr_schedule="restart")


def _run(home: Path, out: Path, **overrides: object) -> PlasticityResults:
    settings: dict[str, object] = {
        "finetune_steps": 10,
        "eval_windows": 32,
        "latency_repeats": 3,
        "degeneration": DegenerationConfig(prompts=2, prompt_tokens=8, new_tokens=8),
        "perplexity_tolerance": 1.0,
        "screen_estimators": False,
        "use_memory": False,
        "dashboard": False,
    }
    config = short_config(**{**settings, **overrides})
    system = AdaptivePlasticitySystem("tiny", None, out, config=config, home=home)
    return system.run_adaptive_optimization(
        max_cycles=2, initial_pruning_level=0.2, initial_growth_ratio=0.0
    )


def _two_cycles(home: Path, out: Path, **overrides: object) -> dict[str, object]:
    results = _run(home, out, **overrides)
    assert [c.accepted for c in results.cycles] == [True, True]
    assert results.reference is not None
    return {
        "cycles": [c.reference_perplexity for c in results.cycles],
        "reference": results.reference["perplexity"],
        "final": results.final["perplexity"],
    }


def test_the_reference_follows_the_same_rates_whether_tracked_or_replayed(
    tiny_home: Path, tmp_path: Path
) -> None:
    tracked = _two_cycles(tiny_home, tmp_path / "tracked")
    replayed = _two_cycles(tiny_home, tmp_path / "replayed", accept_against_reference=False)
    # The run's own track and the summary's replay of the kept cycles (seeds and places in the
    # schedule) are the same model: the same perplexity, to the last bit of a float.
    assert tracked["cycles"][-1] == pytest.approx(tracked["reference"], rel=1e-12)
    assert replayed["reference"] == pytest.approx(tracked["reference"], rel=1e-12)
    assert replayed["final"] == pytest.approx(tracked["final"], rel=1e-12)
    # Restarting at the peak rate every cycle trains differently.
    restarted = _two_cycles(tiny_home, tmp_path / "restarted", lr_schedule="cycle")
    assert restarted["reference"] != pytest.approx(tracked["reference"], rel=1e-6)


def test_a_rolled_back_cycle_leaves_the_reference_where_the_model_is(
    tiny_home: Path, tmp_path: Path
) -> None:
    # Tolerance 0: a pruned cycle must match the start and the reference exactly, so it is
    # rolled back; the retry is judged against the start fine-tuned once (its own stretch of
    # the schedule, its own batches), not twice.
    results = _run(tiny_home, tmp_path, perplexity_tolerance=0.0)
    first, second = results.cycles
    assert not first.accepted and first.heads_pruned > 0
    assert [first.reference_steps, second.reference_steps] == [10, 10]
    assert second.reference_perplexity != pytest.approx(first.reference_perplexity, rel=1e-6)
    if second.accepted:
        assert results.reference is not None and results.reference["finetune_steps"] == 10
    else:
        assert results.reference is None  # nothing kept: nothing to compare with
