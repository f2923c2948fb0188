from __future__ import annotations

from selfimprove.brain.streaks import REJECTION_LIMIT, rejection_streaks, unspent


def test_streaks_count_since_the_models_last_promotion() -> None:
    finished = [
        ("a", "evolve", False),
        ("a", "train", False),
        ("a", "train", True),  # a promotion resets every strategy of "a"
        ("a", "evolve", False),
        ("a", "evolve", False),
        ("b", "evolve", False),
        ("a", "grow", False),
    ]
    assert rejection_streaks(finished) == {"a": {"evolve": 2, "grow": 1}, "b": {"evolve": 1}}


def test_a_strategy_rejected_limit_times_in_a_row_is_left_out_with_the_reason() -> None:
    streaks = {"evolve": REJECTION_LIMIT, "grow": REJECTION_LIMIT - 1}
    kept, spent = unspent(["evolve", "grow"], streaks)
    assert kept == ["grow"]
    assert spent == {
        "evolve": f"evolve was not promoted {REJECTION_LIMIT} times in a row since "
        "the last promotion"
    }
    assert unspent(["evolve", "grow"], {}) == (["evolve", "grow"], {})
