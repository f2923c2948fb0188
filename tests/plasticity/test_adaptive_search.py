"""Issue 18: cycles judged against the same-steps unpruned reference, the level searched for the
largest removal within the tolerance, growth only while grown heads pay."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfimprove.errors import ConfigError
from selfimprove.measure.lm_judge import CycleVerdict
from selfimprove.plasticity import (
    AdaptivePlasticitySystem,
    DegenerationConfig,
    PlasticityResults,
    heads_per_layer,
    read_metrics,
)
from selfimprove.plasticity._acceptance import judge_candidate, judge_learning
from selfimprove.plasticity._adaptation import MAX_PRUNING_LEVEL, adapt_growth
from selfimprove.plasticity._search import RemovalSearch, next_removal, update_search

from .conftest import short_config

# ---------------------------------------------------------------- acceptance (pure)


def _judge(after: float, reference: float | None, start: float = 10.0) -> CycleVerdict:
    return judge_candidate(
        perplexity_start=start,
        perplexity_reference=reference,
        perplexity_after=after,
        degeneration=0.0,
        tolerance=0.05,
        degeneration_threshold=0.35,
        reference_steps=100,
    )


def test_a_candidate_within_the_start_but_not_the_reference_is_rejected() -> None:
    v = _judge(10.3, reference=9.0)  # start limit 10.5, reference limit 9.45
    assert not v.accepted
    assert v.limit == pytest.approx(9.45) and v.margin == 0.0
    assert "10.3 > 9.45 (unpruned reference fine-tuned the same 100 steps 9 + 5%)" in v.reason
    assert _judge(10.3, reference=None).accepted  # the start alone would have kept it


def test_a_candidate_within_both_is_kept_and_the_tighter_bar_sets_the_margin() -> None:
    v = _judge(9.2, reference=9.0)
    assert v.accepted and v.limit == pytest.approx(9.45)
    assert v.margin == pytest.approx(1 - (9.2 / 9.0 - 1) / 0.05)
    # Where fine-tuning made the reference worse than the start, the start still binds.
    worse = _judge(10.6, reference=10.2)
    assert not worse.accepted and worse.limit == pytest.approx(10.5)


# ---------------------------------------------------------------- the search (pure)


@pytest.mark.parametrize(
    ("after", "degeneration", "kept"),
    [(9.9, 0.0, True), (10.0, 0.0, True), (10.1, 0.0, False), (9.9, 0.5, False)],
)
def test_a_learn_only_cycle_is_kept_when_it_learned(
    after: float, degeneration: float, kept: bool
) -> None:
    # Far above the reference (9.0 + 5 % = 9.45): the pruning rule would undo all of these.
    rule = _judge(after, reference=9.0)
    assert not rule.accepted
    verdict = judge_learning(
        perplexity_before=10.0,
        perplexity_after=after,
        degeneration=degeneration,
        degeneration_threshold=0.35,
        rule=rule,
    )
    assert verdict.accepted is kept
    assert verdict.reason.startswith("learn only: perplexity") and rule.reason in verdict.reason
    assert (verdict.limit, verdict.margin) == (rule.limit, rule.margin)


def test_the_search_expands_bisects_and_resolves() -> None:
    s = RemovalSearch(total=32, removable=28, resolution=4)
    target, why = next_removal(s, first=6)
    assert (target, why) == (6, "expand: first level, 6 heads")
    s = update_search(s, removed=6, accepted=True, margin=1.0)
    target, why = next_removal(s, first=6)
    assert target == 12 and why.startswith("expand: 6 kept with 100% of the tolerance left")
    s = update_search(s, removed=12, accepted=True, margin=0.0)
    assert next_removal(s, first=6)[0] == 16  # at the edge: one head per layer more
    s = update_search(s, removed=16, accepted=False, margin=0.0)
    target, why = next_removal(s, first=6)
    assert (target, why) == (14, "bisect: 12 kept, 16 failed")
    s = update_search(s, removed=14, accepted=True, margin=0.2)
    target, why = next_removal(s, first=6)
    assert target is None and "narrower than one head per layer (4)" in why


def test_one_cycle_removes_at_most_half_the_heads_it_starts_with() -> None:
    s = RemovalSearch(total=32, removable=28, resolution=4, accepted=16, margin=1.0)
    target, why = next_removal(s, first=6)
    assert target == 16 + int(MAX_PRUNING_LEVEL * 16) and "capped at 24" in why


def test_nothing_left_to_remove_resolves_the_search() -> None:
    s = RemovalSearch(total=32, removable=4, resolution=4, accepted=4)
    target, why = next_removal(s, first=6)
    assert target is None and "no head left below" in why
    with pytest.raises(ConfigError, match="removable"):
        RemovalSearch(total=8, removable=8, resolution=1)


@settings(max_examples=200, deadline=None)
@given(
    layers=st.integers(1, 6),
    per_layer=st.integers(2, 16),
    keep=st.integers(1, 2),
    threshold=st.integers(-1, 100),
    first_share=st.floats(0.01, 0.5),
    margins=st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40),
)
def test_against_any_threshold_the_search_brackets_the_largest_removal_that_passes(
    layers: int,
    per_layer: int,
    keep: int,
    threshold: int,
    first_share: float,
    margins: list[float],
) -> None:
    """A cycle passes iff it removes at most ``threshold`` heads: the search must stop with
    the largest passing removal bracketed to less than one head per layer, never ask for a
    target outside its bracket, and never lose a kept removal."""
    total, removable = layers * per_layer, layers * (per_layer - keep)
    s = RemovalSearch(total=total, removable=removable, resolution=layers)
    first = round(first_share * total)
    for margin in margins:
        target, _ = next_removal(s, first=first)
        if target is None:
            break
        assert s.accepted < target <= s.upper
        assert target - s.accepted <= max(1, int(MAX_PRUNING_LEVEL * (total - s.accepted)))
        before = s.accepted
        s = update_search(s, removed=target, accepted=target <= threshold, margin=margin)
        assert s.accepted >= before
    else:
        pytest.fail("the search did not resolve in 40 cycles")
    best = min(max(threshold, 0), removable)
    assert s.accepted <= best
    if s.accepted < best:  # resolved by the bracket: the first failure lies close above
        assert s.rejected is not None and s.rejected - s.accepted < max(2, layers)


# ---------------------------------------------------------------- growth (pure)


def test_growth_continues_in_proportion_to_the_heads_that_paid() -> None:
    assert adapt_growth(0.5, grown=8, kept=8) == (
        0.5,
        "growth: all 8 grown heads paid, ratio unchanged",
    )
    ratio, why = adapt_growth(0.5, grown=8, kept=2)
    assert ratio == pytest.approx(0.125) and "2 of 8" in why
    assert adapt_growth(0.5, grown=8, kept=0) == (
        0.0,
        "growth: none of the 8 grown heads paid, growth off",
    )
    assert adapt_growth(0.5, grown=0, kept=0)[0] == 0.5


# ---------------------------------------------------------------- real cycles on tiny

#: Few, short generations: the degeneration check runs, cheaply.
SHORT_GENERATIONS = DegenerationConfig(prompts=2, prompt_tokens=16, new_tokens=16)


def _one_cycle(
    home: Path, out: Path, **overrides: object
) -> tuple[AdaptivePlasticitySystem, PlasticityResults]:
    base: dict[str, object] = {
        "finetune_steps": 20,
        "eval_windows": 32,
        "latency_repeats": 3,
        "degeneration": SHORT_GENERATIONS,
        "screen_estimators": False,
        "use_memory": False,
        "dashboard": False,
        "forecast_before_learning": False,  # these cycles are about the judge: fine-tune them
    }
    base.update(overrides)
    system = AdaptivePlasticitySystem("tiny", None, out, config=short_config(**base), home=home)
    results = system.run_adaptive_optimization(
        max_cycles=1, initial_pruning_level=0.5, initial_growth_ratio=0.0
    )
    return system, results


def test_a_cycle_within_tolerance_of_the_start_but_not_of_the_reference_is_rolled_back(
    tiny_home: Path, tmp_path: Path
) -> None:
    # 1. Measure: half the heads pruned, 20 steps; the reference the same 20 steps.
    _, measured = _one_cycle(tiny_home, tmp_path / "a", perplexity_tolerance=1.0)
    (c,) = measured.cycles
    start, ref, after = measured.start["perplexity"], c.reference_perplexity, c.perplexity_after
    assert ref is not None and c.accepted and c.reference_steps == 20
    print(f"\nstart {start:.4f}, reference after 20 steps {ref:.4f}, candidate {after:.4f}")
    # The reference the rule used is the summary's replay of the kept steps and seeds.
    assert measured.reference is not None
    assert ref == pytest.approx(measured.reference["perplexity"], rel=1e-9)
    assert ref < start and ref < after  # fine-tuning helped the unpruned model more
    # 2. A tolerance between the two bars: the start would keep the cycle, the reference not.
    tol = (max(after / start - 1, 0.0) + (after / ref - 1)) / 2
    assert after <= start * (1 + tol) and after > ref * (1 + tol)
    system, judged = _one_cycle(tiny_home, tmp_path / "b", perplexity_tolerance=tol)
    (rolled,) = judged.cycles
    assert rolled.perplexity_after == pytest.approx(after, rel=1e-9)  # the same cycle again
    assert (
        not rolled.accepted and "unpruned reference fine-tuned the same 20 steps" in rolled.reason
    )
    assert heads_per_layer(system.model_) == [8, 8, 8, 8]  # rolled back
    _, start_only = _one_cycle(
        tiny_home, tmp_path / "c", perplexity_tolerance=tol, accept_against_reference=False
    )
    assert start_only.cycles[0].accepted and start_only.cycles[0].reference_perplexity is None


def test_after_the_search_resolves_the_cycles_only_learn(tiny_home: Path, tmp_path: Path) -> None:
    # Every layer keeps 7 of its 8 heads: 4 heads can go, the first cycle takes them all.
    config = short_config(
        finetune_steps=5,
        eval_windows=32,
        latency_repeats=3,
        degeneration=SHORT_GENERATIONS,
        perplexity_tolerance=1.0,
        min_heads_per_layer=7,
        screen_estimators=False,
        use_memory=False,
        measure_reference=False,
    )
    system = AdaptivePlasticitySystem("tiny", None, tmp_path, config=config, home=tiny_home)
    results = system.run_adaptive_optimization(
        max_cycles=2, initial_pruning_level=0.5, initial_growth_ratio=0.0
    )
    first, second = results.cycles
    assert first.accepted and first.heads_target == 4 and first.heads_after == 28
    assert "no head left below" in first.adaptation
    assert second.heads_target is None and second.heads_pruned == 0
    assert second.choice.startswith("learn only: resolved at 4 of 32 heads removed")
    assert second.heads_after == 28 and second.reference_steps == 10
    # Kept only if it learned something (judge_learning), whatever the tolerance says.
    assert second.accepted is (second.perplexity_after <= first.perplexity_after)
    assert second.reason.startswith("learn only: perplexity")
    assert results.dashboard is not None and results.dashboard.exists()
    phases = [(r["cycle"], r["phase"]) for r in read_metrics(results.run_dir)]
    assert (2, "learn") in phases and (2, "prune") not in phases
    # Without learn_when_resolved the run stops there.
    stop = AdaptivePlasticitySystem(
        "tiny",
        None,
        tmp_path / "stop",
        config=replace(config, learn_when_resolved=False),
        home=tiny_home,
    )
    assert len(stop.run_adaptive_optimization(2, 0.5, 0.0).cycles) == 1
