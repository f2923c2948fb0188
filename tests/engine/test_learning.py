"""Meta-learnings in the shared table, times_validated, and the pattern learner."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from selfimprove.engine import MetaLearningType, SelfImprovementEngine
from selfimprove.errors import ConfigError
from selfimprove.meta.patterns import PatternLearner, Step, pattern_id


def _value_experiment(
    engine: SelfImprovementEngine, wid: int, approach: str, after: float, before: float = 10.0
) -> None:
    """Plan experiments for ``wid`` and run ``approach`` with a deterministic value."""
    exp = next(e for e in engine.generate_experiments(wid, 3) if e.strategy == approach)
    engine.test_approach(
        exp.id,
        lambda: after,
        baseline_value=before,
        repeats=4,
        measure="value",
        direction="minimize",
    )


def test_record_meta_learning_uses_the_shared_table(engine: SelfImprovementEngine) -> None:
    # a row as the neural system's insights write it, beside the engine's own
    engine.store.upsert_meta_learning(
        "strategy_effect",
        "prune|model|classification",
        statement="prune helps latency",
        count=4,
        successes=3,
        confidence=0.3,
    )
    rec = engine.record_meta_learning(
        "approach_preference", "efficiency", "caching beats pooling for hot paths", 0.7
    )
    assert (rec.kind, rec.subject, rec.statement) == (
        "approach_preference",
        "efficiency",
        "caching beats pooling for hot paths",
    )
    assert rec.times_validated == 0
    again = engine.record_meta_learning(
        "approach_preference", "efficiency", "caching beats pooling, confirmed", 0.8
    )
    assert again.id == rec.id and again.times_validated == 1 and again.confidence == 0.8
    kinds = [m.kind for m in engine.get_meta_learnings()]
    assert kinds == ["approach_preference", "strategy_effect"]  # most confident first
    assert [m.kind for m in engine.get_meta_learnings(min_confidence=0.5)] == [
        "approach_preference"
    ]
    with pytest.raises(ConfigError, match="meta-learning type must be one of"):
        engine.record_meta_learning("hunch", "x", "y", 0.5)


def test_derived_learnings_and_times_validated_grow_when_later_experiments_agree(
    engine: SelfImprovementEngine,
) -> None:
    wid = engine.identify_weakness("slow path", "efficiency", "high", "hot path too slow").id
    _value_experiment(engine, wid, "caching", after=5.0)  # 50 % better: success
    eff = engine.store.find_meta_learning("experiment_effectiveness", "efficiency|caching")
    assert eff is not None and (eff.count, eff.successes, eff.times_validated) == (1, 1, 0)
    _value_experiment(engine, wid, "caching", after=4.0)  # success again: agrees
    eff = engine.store.find_meta_learning("experiment_effectiveness", "efficiency|caching")
    assert eff is not None and (eff.count, eff.successes, eff.times_validated) == (2, 2, 1)
    assert eff.evidence["mean_improvement"] == pytest.approx((0.5 + 0.6) / 2)
    assert eff.confidence > 0.3  # Wilson lower bound of 2/2
    _value_experiment(engine, wid, "caching", after=9.9)  # 1 %: disagrees, no validation
    eff = engine.store.find_meta_learning("experiment_effectiveness", "efficiency|caching")
    assert eff is not None and (eff.count, eff.successes, eff.times_validated) == (3, 2, 1)
    pref = engine.store.find_meta_learning("approach_preference", "efficiency")
    assert pref is not None and pref.evidence["preferred"] == "caching"
    modes = engine.get_meta_learnings(type=MetaLearningType.FAILURE_MODES)
    assert [m.subject for m in modes] == ["caching|below_threshold"]


def test_pattern_learner_counts_sequences_and_predicts() -> None:
    seqs = [
        [Step("caching", False), Step("query_optimization", True, 0.4)],
        [Step("caching", False), Step("query_optimization", True, 0.3)],
        [Step("caching", False), Step("resource_pooling", False)],
        [Step("resource_pooling", True, 0.2)],
    ]
    learner = PatternLearner(max_order=1, min_support=2)
    patterns = learner.detect_sequence_pattern(seqs)
    [p] = patterns
    assert p.sequence == ("caching", "query_optimization")
    assert (p.count, p.successes) == (2, 2) and p.mean_improvement == pytest.approx(0.35)
    ranked = learner.predict_next(["caching"], ["resource_pooling", "query_optimization"])
    assert [r.approach for r in ranked] == ["query_optimization", "resource_pooling"]
    assert ranked[0].pattern_id == p.pattern_id and ranked[0].probability == pytest.approx(0.75)
    # resource_pooling after caching was seen once only: it falls back to its own record
    assert ranked[1].pattern_id == pattern_id(["resource_pooling"]) and ranked[1].support == 2


def test_pattern_names_are_stable_across_processes() -> None:
    seq = ["caching", "query_optimization"]
    expected_id = hashlib.sha256(b"caching\x1fquery_optimization").hexdigest()[:12]
    assert pattern_id(seq) == f"seq-{expected_id}"
    # Another process with another string-hash salt: hash() differs there, the name does not.
    code = (
        "from selfimprove.meta.patterns import pattern_id; "
        "print(pattern_id(['caching', 'query_optimization'])); print(hash('caching'))"
    )
    other_salt = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    name, salted = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONHASHSEED": other_salt},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(salted) != hash("caching")  # the test would catch a hash()-based name
    assert name == f"seq-{expected_id}"


def test_engine_stores_recurring_sequences_as_improvement_patterns(
    engine: SelfImprovementEngine,
) -> None:
    for _ in range(2):
        wid = engine.identify_weakness(f"w{_}", "efficiency", "high", "slow").id
        _value_experiment(engine, wid, "resource_pooling", after=9.9)  # fails
        _value_experiment(engine, wid, "caching", after=5.0)  # then succeeds
    stored = engine.get_meta_learnings(type="improvement_patterns")
    subjects = {m.subject: m for m in stored}
    pid = pattern_id(["resource_pooling", "caching"])
    assert pid in subjects
    assert subjects[pid].count == 2 and subjects[pid].successes == 2
    assert subjects[pid].evidence["sequence"] == ["resource_pooling", "caching"]
    # the next plan for a weakness that just saw pooling fail records that caching follows
    wid = engine.identify_weakness("w3", "efficiency", "high", "slow").id
    _value_experiment(engine, wid, "resource_pooling", after=9.9)
    plan = engine.generate_experiments(wid, 3)
    caching = next(e for e in plan if e.strategy == "caching")
    assert caching.params["pattern_prediction"]["pattern_id"] == pid
    assert caching.params["pattern_prediction"]["probability"] == pytest.approx(0.75)
