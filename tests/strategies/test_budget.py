"""A budget is a sane number: bounded epochs, finite bounded seconds."""

from __future__ import annotations

import math

import pytest

from selfimprove.errors import ConfigError
from selfimprove.strategies import MAX_EPOCHS, MAX_SECONDS, Budget


@pytest.mark.parametrize(
    ("epochs", "seconds"),
    [(0, 1.0), (MAX_EPOCHS + 1, 1.0), (10**400, 1.0), (1, 0.0), (1, math.nan), (1, math.inf)],
)
def test_out_of_range_budgets_are_refused(epochs: int, seconds: float) -> None:
    with pytest.raises(ConfigError, match="budget"):
        Budget(epochs=epochs, seconds=seconds)


def test_the_largest_budget_is_accepted() -> None:
    b = Budget(epochs=MAX_EPOCHS, seconds=MAX_SECONDS)
    assert b.epochs == MAX_EPOCHS and b.hard_limit_s > MAX_SECONDS
