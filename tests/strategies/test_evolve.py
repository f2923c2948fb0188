"""``evolve``: NSGA-II over the task's architecture space, two objectives, ask/tell."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from selfimprove.errors import ConfigError, StrategyError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.modules import checkpoint_bytes
from selfimprove.registry import LoadedModel
from selfimprove.store import Decision
from selfimprove.strategies import Budget, Candidate, StrategyContext
from selfimprove.strategies._evolve import EvolveStrategy
from selfimprove.strategies._evolve_choice import Point, choose_point
from selfimprove.tasks import SupervisedTask, resolve_task

#: A large, briefly trained incumbent: smaller architectures can match it.
BIG = {"width": 256, "depth": 2, "activation": "relu", "dropout": 0.0}


def _register_digits(
    si: SelfImprover, params: dict[str, Any] = BIG, epochs: int = 2, name: str = "digits"
) -> None:
    task = resolve_task("pattern_recognition")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = task.build(params)
    train_(module, task, TrainConfig(epochs=epochs, lr=1e-3, seed=0))
    si.register_model(name, task, module, dict(params))


def _apply(
    inc: LoadedModel, objective: str, *, epochs: int = 60, seed: int = 1, **params: Any
) -> Candidate:
    ctx = StrategyContext(
        task=inc.task,
        objective=objective,
        budget=Budget(epochs=epochs, seconds=60),
        seed=seed,
        params=params,
    )
    return EvolveStrategy().apply(inc, ctx)


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and a != b


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = module.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in after)


def test_evolve_front_is_non_dominated_and_the_candidate_reloads(improver: SelfImprover) -> None:
    _register_digits(improver)
    inc = improver.load("digits")
    before = _snapshot(inc.module)
    cand = _apply(inc, "accuracy", epochs=60)
    d = cand.details
    assert _unchanged(inc.module, before)

    # Budget: the trials' epochs (each within its cap) and the chosen point's refit.
    trials = d["trials"]
    assert d["search_epochs"] == sum(t["epochs"] for t in trials) <= 60 - 24  # 40 % kept
    assert cand.cost.epochs == d["epochs_used"] == d["search_epochs"] + d["refit"]["epochs"] <= 60
    assert d["refit"]["epochs"] >= 1
    if d["refit"]["kept"]:  # the refit is kept only when it lowered the holdout error
        assert d["refit"]["holdout_error_after"] < d["refit"]["holdout_error_before"]
    assert all(t["epochs"] <= d["trial_epochs"] for t in trials)
    assert d["n_trials"] > d["population_size"]  # more than the random first generation

    # The front: at least two distinct points, none dominating another (checked here) ...
    front = d["pareto_front"]
    cost = d["objectives"][1]
    assert cost == "parameters"  # deterministic by default for a quality target
    pts = [(p["holdout_error"], p[cost]) for p in front]
    assert len(set(pts)) >= 2
    assert not any(_dominates(a, b) for a in pts for b in pts)
    # ... and exactly the non-dominated set of all complete trials.
    done = [t for t in trials if t["state"] == "complete"]
    all_pts = {t["trial"]: (t["holdout_error"], t[cost]) for t in done}
    nd = {n for n, a in all_pts.items() if not any(_dominates(b, a) for b in all_pts.values())}
    assert {p["trial"] for p in front} == nd

    # Primary objective: the lowest holdout error on the front among the points within the
    # task's latency guard on counted (nominal) latency, nothing timed (or on the whole front
    # when none is).
    assert d["incumbent"]["latency_ms"] is None and all(p["latency_ms"] is None for p in front)
    lat = inc.task.objective("latency_ms")
    inc_ms = d["incumbent"]["nominal_latency_ms"]
    admitted = [p for p in front if lat.within_tolerance(inc_ms, p["nominal_latency_ms"])]
    assert d["choice"]["admitted"] == [p["trial"] for p in admitted]
    pool = admitted or front
    assert d["chosen_trial"] == min(pool, key=lambda p: p["holdout_error"])["trial"]
    assert cand.origin == "fresh_init" and cand.params == d["chosen_params"]

    # The candidate rebuilds from its params, and reloads to identical outputs once saved.
    task = inc.task
    rebuilt = task.build(cand.params)
    rebuilt.load_state_dict(cand.module.state_dict(), strict=True)
    model = improver.store.get_model("digits")
    v = improver.registry.save_version(
        model, cand.module, cand.params, parent=inc.version, strategy="evolve",
        origin=cand.origin, metrics={},
    )  # fmt: skip
    loaded = improver.load("digits", v.number)
    x = task.splits().test.x
    with torch.no_grad():
        assert torch.equal(loaded.module(x), cand.module.eval()(x))
        assert torch.equal(rebuilt.eval()(x), cand.module(x))
    assert _unchanged(inc.module, before)


def test_evolve_for_latency_picks_the_fastest_point_with_acceptable_error(
    improver: SelfImprover,
) -> None:
    _register_digits(improver)
    inc = improver.load("digits")
    before = _snapshot(inc.module)
    cand = _apply(inc, "latency_ms", epochs=60)
    d = cand.details
    assert _unchanged(inc.module, before)
    inc_error = d["incumbent"]["holdout_error"]
    qualifying = d["choice"]["qualifying"]
    # Every front point that is no worse than the incumbent was considered, and only those.
    want = {p["trial"] for p in d["pareto_front"] if p["holdout_error"] <= inc_error}
    assert {q["trial"] for q in qualifying} == want and want
    chosen = next(q for q in qualifying if q["trial"] == d["chosen_trial"])
    assert chosen["holdout_error"] <= inc_error
    # No slower than any other acceptable point (timed side by side before choosing).
    assert all(chosen["latency_ms"] <= q["latency_ms"] for q in qualifying)


def test_evolve_for_size_picks_the_smallest_acceptable_point_and_the_judge_promotes(
    improver: SelfImprover,
) -> None:
    _register_digits(improver)
    out = improver.loop.improve(
        "digits", cycle=1, strategy=EvolveStrategy(), objective="size_bytes",
        budget=Budget(60, 60),
    )  # fmt: skip
    exp = improver.store.get_experiment(out.experiment_id)  # type: ignore[arg-type]
    d = exp.statistics["strategy_details"]
    assert d["objectives"][1] == "size_bytes"  # the cost follows the target
    inc_error = d["incumbent"]["holdout_error"]
    task = resolve_task("pattern_recognition")
    # Sizes measured independently, from the params alone.
    sizes = {p["trial"]: checkpoint_bytes(task.build(p["params"])) for p in d["pareto_front"]}
    assert sizes == {p["trial"]: p["size_bytes"] for p in d["pareto_front"]}
    ok = [p for p in d["pareto_front"] if p["holdout_error"] <= inc_error]
    chosen = next(p for p in ok if p["trial"] == d["chosen_trial"])
    assert sizes[chosen["trial"]] == min(sizes[p["trial"]] for p in ok)
    assert out.decision is Decision.PROMOTE, out.reason
    assert out.after < 0.5 * out.before  # bytes
    spent = sum(t["epochs"] for t in d["trials"]) + d["refit"]["epochs"]
    assert exp.compute["epochs"] == spent <= 60
    v = improver.registry.incumbent("digits")
    assert (v.strategy, v.origin, v.params) == ("evolve", "fresh_init", d["chosen_params"])


def test_evolve_fails_with_a_reason_when_no_point_reaches_the_incumbent(
    improver: SelfImprover,
) -> None:
    # A well-trained incumbent, and trials of one epoch each: none can match it.
    _register_digits(improver, {"width": 64, "depth": 1, "activation": "relu"}, epochs=30)
    with pytest.raises(StrategyError, match="no point on the Pareto front reached"):
        _apply(improver.load("digits"), "size_bytes", epochs=6, trial_epochs=1)


def test_evolve_spends_exactly_its_epoch_budget(improver: SelfImprover) -> None:
    _register_digits(improver)
    cand = _apply(improver.load("digits"), "accuracy", epochs=5, trial_epochs=2, seed=3)
    assert [t["epochs"] for t in cand.details["trials"]] == [2, 1]  # 3 of 5: 40 % kept
    assert cand.details["refit"]["epochs"] == 2  # what the search left
    assert cand.cost.epochs == 5 and cand.details["stopped"] == "epoch_budget"
    plain = _apply(
        improver.load("digits"), "accuracy", epochs=5, trial_epochs=2, seed=3, refit_share=0
    )
    assert [t["epochs"] for t in plain.details["trials"]] == [2, 2, 1]
    assert plain.details["refit"] == {
        "epochs": 0,
        "holdout_error_before": plain.details["choice"]["holdout_error"],
        "skipped": "no refit share",
    }
    assert plain.cost.epochs == 5
    with pytest.raises(ConfigError, match=r"refit_share=1.5 is not a finite number in \[0, 0.9\]"):
        _apply(improver.load("digits"), "accuracy", epochs=5, refit_share=1.5)


def test_evolve_refit_lowers_the_chosen_points_holdout_error(improver: SelfImprover) -> None:
    # Trials of 2 epochs on a weak incumbent: the refit has room to help.
    _register_digits(improver, {"width": 32, "depth": 1, "activation": "relu"}, epochs=1)
    cand = _apply(improver.load("digits"), "accuracy", epochs=30, trial_epochs=2, seed=0)
    refit = cand.details["refit"]
    assert refit["kept"] is True and refit["epochs"] >= 10
    assert refit["holdout_error_after"] < refit["holdout_error_before"]


def _wine_without_space(name: str, build: Any) -> SupervisedTask:
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return SupervisedTask.classification(
        name, x.astype(np.float32), y, build=build, default_params={"width": 8}
    )


def test_evolve_is_not_applicable_without_a_search_space(improver: SelfImprover) -> None:
    # A builder that ignores its params: no space of its own and none can be inferred.
    task = _wine_without_space("wine_no_space", lambda p: torch.nn.Linear(13, 3))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = task.build({"width": 8})
    improver.register_model("wine", task, module, {"width": 8})
    out = improver.loop.improve("wine", cycle=1, strategy=EvolveStrategy())
    assert out.status == "not_applicable" and "search space" in out.reason
    assert "none could be inferred" in out.reason and "ignores" in out.reason
    assert improver.store.list_experiments() == []


def test_evolve_searches_a_space_inferred_for_the_readme_model(improver: SelfImprover) -> None:
    def build(params: dict[str, Any]) -> torch.nn.Module:  # the README's own model
        w = params["width"]
        return torch.nn.Sequential(torch.nn.Linear(13, w), torch.nn.ReLU(), torch.nn.Linear(w, 3))

    task = _wine_without_space("wine_readme", build)
    assert task.search_space() is None
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build({"width": 8})
    improver.register_model("wine", task, module, {"width": 8})
    settings = {"max_trials": 4, "population_size": 2, "cost": "parameters"}
    out = improver.loop.improve(
        "wine",
        cycle=1,
        strategy=EvolveStrategy(),
        params=settings,
        budget=Budget(epochs=8, seconds=60),
        only_below_target=False,
    )
    assert out.status == "completed", out.reason
    (record,) = improver.history("wine")
    details = record.statistics["strategy_details"]
    assert details["space_source"].startswith("inferred: width: a width in [2, 128] (log)")
    assert details["space"] == {"width": "IntParam(low=2, high=128, log=True)"}
    assert all(2 <= t["params"]["width"] <= 128 for t in details["trials"])
    assert {tuple(t["params"]) for t in details["trials"]} == {("width",)}


def test_evolve_for_quality_prefers_the_best_point_the_guards_admit() -> None:
    task = resolve_task("pattern_recognition")
    lin = torch.nn.Linear(1, 1)

    def point(n: int, error: float, ms: float) -> Point:
        return Point(
            n, {}, lin, error, None, ms, size_bytes=1000 * (n + 1), parameters=2, epochs=1
        )  # untimed: the guard reads the counted (nominal) latency

    accurate_but_slow, fast = point(0, 0.01, 1.0), point(1, 0.02, 0.1)
    front = [accurate_but_slow, fast]  # sorted by error, as evolve sorts it
    s = EvolveStrategy().settings(
        StrategyContext(task=task, objective="accuracy", budget=Budget(epochs=10), seed=0)
    )

    def choose(inc_ms: float, t: Any = task) -> tuple[Any, dict[str, Any]]:
        x1 = torch.zeros(1, 1)
        return choose_point("accuracy", front, lin, x1, s, 0.05, None, t, inc_ms)

    chosen, choice = choose(0.1)  # 1.0 ms would be +900 % and +0.9 ms: beyond the guard
    assert chosen is fast and choice["admitted"] == [1]
    chosen, _ = choose(0.9)  # within 25 %: the more accurate point is admitted
    assert chosen is accurate_but_slow
    limited = SupervisedTask(
        "lim", kind="classification", splits=task.splits(), build=task.build,
        default_params=task.default_params(), size_limit_bytes=1500,
    )  # fmt: skip
    chosen, choice = choose(0.01, limited)  # none within the latency guard: the best overall
    assert chosen is accurate_but_slow and choice["admitted"] == []
    assert "no point within" in choice["rule"]
    chosen, choice = choose(0.9, limited)  # the size limit excludes the 2000-byte point
    assert chosen is accurate_but_slow and choice["admitted"] == [0]
