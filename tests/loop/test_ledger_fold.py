"""Folding only what is new gives what a read of the whole ledger gives, whatever order the
experiments finish in (selfimprove.loop.ledger_fold, selfimprove.meta.insights.InsightBook)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from selfimprove.brain.streaks import rejection_streaks
from selfimprove.loop.ledger_fold import ExperimentFeed, PlanHistory, finished_prefix
from selfimprove.meta.gain import experiment_facts
from selfimprove.meta.insights import InsightBook, derive_insights, fold_into
from selfimprove.store import Decision, ExperimentStatus, Store
from selfimprove.strategies import STRATEGIES

FINISHED = ("completed", "failed")


def _whole_ledger(
    store: Store,
) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, int]]]:
    """Planning's history read from every experiment (what each cycle used to do)."""
    names = {m.id: m.name for m in store.list_models()}
    last: dict[str, int] = {}
    stalled: dict[str, int] = {}
    rows: list[tuple[str, str, bool]] = []
    for _, model_id, cycle, strategy, status, decision in store.experiment_outline():
        name = names[model_id]  # type: ignore[index]
        if cycle is not None:
            last[name] = max(last.get(name, 0), cycle)
        promoted = decision == Decision.PROMOTE.value
        if status in FINISHED or promoted:
            rows.append((name, strategy, promoted))
        if promoted:
            stalled[name] = 0
        elif status in FINISHED and STRATEGIES[strategy].family == "training":
            stalled[name] = stalled.get(name, 0) + 1
    return last, stalled, rejection_streaks(rows)


def _finish(store: Store, rng: random.Random, exp_id: int) -> None:
    roll = rng.random()
    if roll < 0.15:
        store.update_experiment(
            exp_id, status=ExperimentStatus.FAILED, reason="DivergedError: loss is nan"
        )
        return
    promoted = roll > 0.7
    store.update_experiment(
        exp_id,
        status=ExperimentStatus.COMPLETED,
        decision=Decision.PROMOTE if promoted else Decision.REJECT,
        statistics={
            "relative_improvement": rng.uniform(0.01, 0.3) if promoted else -0.01,
            "guards": {"accuracy": {"passed": rng.random() < 0.8, "regression": 0.01}},
        },
    )


def _scenario(store: Store, seed: int, steps: int, check: object) -> None:
    """Random experiments on three models, started and finished out of order; ``check`` is
    called after every step."""
    rng = random.Random(seed)
    models = [store.add_model(f"m{i}", "digits", "digits") for i in range(3)]
    open_ids: list[int] = []
    cycle = 0
    for _ in range(steps):
        if open_ids and rng.random() < 0.5:
            _finish(store, rng, open_ids.pop(rng.randrange(len(open_ids))))
        else:
            cycle += rng.random() < 0.5
            exp = store.add_experiment(
                model_id=rng.choice(models).id,
                strategy=rng.choice(["train", "evolve", "prune", "distill"]),
                objective=rng.choice(["accuracy", "size_bytes"]),
                cycle=cycle,
                status=ExperimentStatus.RUNNING,
            )
            open_ids.append(exp.id)
        check()  # type: ignore[operator]
    for exp_id in open_ids:
        _finish(store, rng, exp_id)
    check()  # type: ignore[operator]


def test_finished_prefix_stops_at_the_first_open_row() -> None:
    assert finished_prefix([1, 2, 3], lambda r: r == 2) == 1
    assert finished_prefix([1, 3], lambda r: r == 2) == 2
    assert finished_prefix([], lambda r: True) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plan_history_equals_a_read_of_the_whole_ledger(tmp_path: Path, seed: int) -> None:
    store = Store(home=tmp_path)
    history = PlanHistory(store)
    marks: list[int] = []

    def check() -> None:
        assert history.read() == _whole_ledger(store)
        marks.append(history.watermark)

    _scenario(store, seed, 60, check)
    assert marks == sorted(marks)  # the watermark only moves forward
    assert history.watermark == max(e.id for e in store.list_experiments())
    store.close()


def test_the_feed_hands_out_each_finished_experiment_once_in_id_order(tmp_path: Path) -> None:
    store = Store(home=tmp_path)
    feed = ExperimentFeed(store, page=4)  # small pages: the paging is exercised
    handed: list[int] = []

    def check() -> None:
        for page in feed.new():
            assert all(e.status.is_finished() for e in page)
            handed.extend(e.id for e in page)

    _scenario(store, 3, 50, check)
    assert handed == [e.id for e in store.list_experiments()]  # all, once, in order
    store.close()


def test_insights_folded_cycle_by_cycle_equal_those_of_the_whole_ledger(tmp_path: Path) -> None:
    store = Store(home=tmp_path)
    book, feed = InsightBook(), ExperimentFeed(store, page=5)
    folded: list[int] = []

    def check() -> None:
        for page in feed.new():
            fold_into(book, store, page, experiment_facts(store, page))
            folded.extend(e.id for e in page)
        upto = [e for e in store.list_experiments() if e.id in set(folded)]
        assert book.insights() == derive_insights(store, experiments=upto)

    _scenario(store, 4, 60, check)
    insights = book.insights()
    kinds = {i.kind for i in insights}
    assert kinds == {"strategy_effect", "guard_held", "failure_mode"}
    assert sum(i.count for i in insights if i.kind == "strategy_effect") == len(folded)
    store.close()
