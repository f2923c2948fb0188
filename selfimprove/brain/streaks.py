"""Strategies the judge keeps rejecting on a model: counted from the ledger, no longer paid for.

The bandit learns per (weakness kind, model family), so one model that no strategy helps any
more kept drawing the same arm (twelve ``evolve`` rejections in a row on one model were seen).
The rule here is per model and pure: since the model's last promotion, a strategy whose last
:data:`REJECTION_LIMIT` finished experiments on it were all not promoted (rejected or failed)
is *spent* for that model; the planner leaves it out until the model is promoted again (a new
incumbent is a new situation). When every strategy of a weakness's kind is spent the planner
turns to the other kind, and when all are spent the model gets no task: its budget goes to
models where experiments still pay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["REJECTION_LIMIT", "add_streak", "rejection_streaks", "unspent"]

#: Consecutive experiments not promoted, since the model's last promotion, that make a strategy
#: spent for that model.
REJECTION_LIMIT = 3


def rejection_streaks(
    finished: Iterable[tuple[str, str, bool]],
) -> dict[str, dict[str, int]]:
    """Per model, per strategy: experiments not promoted since the model's last promotion.

    Args:
        finished: ``(model, strategy, promoted)`` of each finished experiment (completed or
            failed), oldest first.
    """
    streaks: dict[str, dict[str, int]] = {}
    for model, strategy, promoted in finished:
        add_streak(streaks, model, strategy, promoted)
    return streaks


def add_streak(
    streaks: dict[str, dict[str, int]], model: str, strategy: str, promoted: bool
) -> None:
    """Fold one more finished experiment into ``streaks`` (see :func:`rejection_streaks`)."""
    if promoted:
        streaks[model] = {}
    else:
        counts = streaks.setdefault(model, {})
        counts[strategy] = counts.get(strategy, 0) + 1


def unspent(
    arms: Sequence[str], streaks: Mapping[str, int], limit: int = REJECTION_LIMIT
) -> tuple[list[str], dict[str, str]]:
    """The arms still worth paying for on one model, and why each other one is left out.

    Args:
        arms: The strategies that could serve the weakness, in the rules' order.
        streaks: That model's :func:`rejection_streaks`.
        limit: Experiments not promoted in a row that make a strategy spent.
    """
    kept, spent = [], {}
    for arm in arms:
        n = streaks.get(arm, 0)
        if n >= limit:
            spent[arm] = f"{arm} was not promoted {n} times in a row since the last promotion"
        else:
            kept.append(arm)
    return kept, spent
