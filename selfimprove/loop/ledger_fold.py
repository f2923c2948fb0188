"""Read the ledger once: what planning and learning need, folded from the experiments that are
new since the last cycle instead of re-read from the whole ledger every cycle.

A reader keeps a *watermark*: the highest experiment id below which every experiment is
finished (neither planned nor running) and already folded into its state. Each cycle it reads
only the experiments above it: the finished ones up to the first open one are folded for good
and the watermark moves past them; the rest (the *tail*: an open experiment, possibly another
process's, and everything after it) is applied to a copy of the state for this cycle only and
read again next cycle. So the state after any cycle equals a fold of the whole ledger in id
order, whatever order the experiments finished in, and a cycle costs what is new, not what the
ledger holds (tested against the whole-ledger fold in ``tests/loop/test_ledger_fold.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from selfimprove.brain.streaks import add_streak
from selfimprove.store import Decision, ExperimentRecord, ExperimentStatus, Store
from selfimprove.strategies import STRATEGIES

__all__ = ["PAGE", "ExperimentFeed", "PlanHistory", "finished_prefix"]

#: Experiments read per query when catching up with a long ledger (bounds memory).
PAGE = 2000

_OPEN = frozenset({ExperimentStatus.PLANNED.value, ExperimentStatus.RUNNING.value})
_FINISHED = (ExperimentStatus.COMPLETED.value, ExperimentStatus.FAILED.value)

T = TypeVar("T")


def finished_prefix(rows: Sequence[T], is_open: Callable[[T], bool]) -> int:
    """How many of ``rows`` (in id order) come before the first open one: those may be folded
    for good."""
    for i, row in enumerate(rows):
        if is_open(row):
            return i
    return len(rows)


Outline = tuple[int, int | None, int | None, str, str, str | None]


@dataclass
class _History:
    """Per model name: the last cycle it had an experiment, training experiments not promoted
    in a row, and per strategy experiments not promoted since its last promotion."""

    last: dict[str, int] = field(default_factory=dict)
    stalled: dict[str, int] = field(default_factory=dict)
    streaks: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(
        self, name: str, cycle: int | None, strategy: str, status: str, decision: str | None
    ) -> None:
        if cycle is not None:
            self.last[name] = max(self.last.get(name, 0), cycle)
        promoted = decision == Decision.PROMOTE.value
        if not (status in _FINISHED or promoted):
            return
        if promoted:
            self.stalled[name] = 0
        elif strategy in STRATEGIES and STRATEGIES[strategy].family == "training":
            self.stalled[name] = self.stalled.get(name, 0) + 1
        add_streak(self.streaks, name, strategy, promoted)

    def copy(self) -> _History:
        return _History(
            dict(self.last), dict(self.stalled), {k: dict(v) for k, v in self.streaks.items()}
        )


class PlanHistory:
    """What planning reads from the ledger each cycle, kept up to date incrementally.

    Args:
        store: The ledger.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.watermark = 0
        self._state = _History()
        self._names: dict[int, str] = {}

    def _name(self, model_id: int | None) -> str | None:
        if model_id is None:
            return None
        if model_id not in self._names:  # a model registered since: read the names again
            self._names = {m.id: m.name for m in self.store.list_models()}
        return self._names.get(model_id)

    def _fold(self, state: _History, rows: Sequence[Outline]) -> None:
        for _, model_id, cycle, strategy, status, decision in rows:
            name = self._name(model_id)
            if name is not None:
                state.add(name, cycle, strategy, status, decision)

    def read(self) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, int]]]:
        """Per model name: the last cycle with an experiment, training experiments not promoted
        in a row since its last promotion, and per strategy experiments not promoted since then
        (:func:`~selfimprove.brain.streaks.rejection_streaks`) — as a fold of the whole ledger.
        """
        rows = self.store.experiment_outline(after_id=self.watermark)
        done = finished_prefix(rows, lambda r: r[4] in _OPEN)
        self._fold(self._state, rows[:done])
        if done:
            self.watermark = rows[done - 1][0]
        state = self._state
        if done < len(rows):  # an open experiment: the rest counts for this cycle only
            state = state.copy()
            self._fold(state, rows[done:])
        return state.last, state.stalled, state.streaks


class ExperimentFeed:
    """The ledger's finished experiments, each handed out once, in id order.

    Args:
        store: The ledger.
        page: Experiments read per query.
    """

    def __init__(self, store: Store, page: int = PAGE) -> None:
        self.store = store
        self.page = page
        self.watermark = 0

    def new(self) -> Iterator[list[ExperimentRecord]]:
        """Pages of the experiments finished since the last call, up to the first open one
        (that one and those after it come in a later call, once it is finished), as
        :meth:`~selfimprove.store.Store.list_experiment_summaries` reads them (the parts of
        their JSON that meta-learning reads)."""
        while True:
            rows = self.store.list_experiment_summaries(after_id=self.watermark, limit=self.page)
            done = finished_prefix(rows, lambda e: e.status.value in _OPEN)
            if done:
                self.watermark = rows[done - 1].id
                yield rows[:done]
            if done < len(rows) or len(rows) < self.page:
                return
