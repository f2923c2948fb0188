"""Neural alternatives: routing by error budget and latency, shadow checks, drift fallback,
generated data, registration and improvement by the loop, thread safety."""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from torch import nn

from selfimprove.alternatives import (
    NeuralAlternative,
    Operation,
    PerformanceTracker,
    Route,
    TrackerState,
    operation_data,
    operation_task,
    output_scale,
    register_alternative,
)
from selfimprove.errors import ConfigError, TaskError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.seeding import torch_seeded
from selfimprove.tasks import build_mlp

logger = logging.getLogger(__name__)

# The operation: f(a, b) = (sin(pi a) * b, a^2 - b) on [-1, 1]^2.
SLOW_STEPS = 2000


def _fast(x: np.ndarray) -> np.ndarray:
    """(N, 2) -> (N, 2), vectorised numpy."""
    a, b = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)
    return np.stack([np.sin(np.pi * a) * b, a**2 - b], axis=1)


def _slow(x: np.ndarray) -> np.ndarray:
    """The same function computed the long way: sin(pi a) as the integral of cos from 0 to
    pi a, by a midpoint rule of SLOW_STEPS Python steps per row (real work, not a sleep)."""
    out = np.empty((len(x), 2))
    for i, (a, b) in enumerate(x.astype(np.float64)):
        upper = math.pi * a
        h = upper / SLOW_STEPS
        sine = h * sum(math.cos(h * (k + 0.5)) for k in range(SLOW_STEPS))
        out[i] = (sine * b, a * a - b)
    return out


def _sampler(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, (n, 2))


def _op(
    name: str, algorithm: Callable[[np.ndarray], np.ndarray] = _fast, error_budget: float = 0.02
) -> Operation:
    return Operation(
        name=name,
        algorithm=algorithm,
        sampler=_sampler,
        in_features=2,
        out_features=2,
        error_budget=error_budget,
        n_examples=2000,
    )


FAST = _op("alt_wave_fast")
SLOW = _op("alt_wave_slow", _slow)


@dataclass
class _Shiftable:
    """An algorithm that can change under the network's feet (for the drift test)."""

    shift: float = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _slow(x) + self.shift


@pytest.fixture(scope="module")
def good_net() -> nn.Sequential:
    """An MLP trained (seeded) on the generated data of the operation until within budget."""
    task = operation_task(FAST)
    with torch_seeded(1):
        module = build_mlp(2, 2, {"width": 64, "depth": 2})
    train_(module, task, TrainConfig(epochs=40, lr=3e-3, seed=1, patience=0))
    return module.eval()


def _untrained() -> nn.Module:
    with torch_seeded(2):
        return build_mlp(2, 2, {"width": 64, "depth": 2}).eval()


def _tracker(
    op: Operation, *, shadow_every: int = 10, window: int = 20, min_shadows: int = 5
) -> PerformanceTracker:
    """A tracker for ``op`` with its scale measured on 256 seeded draws."""
    _, y = operation_data(op, data_seed=9, n=256)
    return PerformanceTracker(
        op.name,
        op.error_budget,
        output_scale(y),
        shadow_every=shadow_every,
        window=window,
        min_shadows=min_shadows,
    )


def _inputs(seed: int, n: int, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, (n, 2)).astype(np.float32)


# ---------------------------------------------------------------------- routing
def test_slow_algorithm_and_accurate_network_route_to_the_network(good_net: nn.Module) -> None:
    alt = NeuralAlternative(SLOW, good_net)
    v = alt.tracker.validation
    assert v is not None and v.within_budget, v
    logger.info("slow vs network: %s", v.to_dict())
    assert alt.tracker.state is TrackerState.ENABLED
    for b in (1, 64):
        assert v.latency_at(b).neural_faster, v.latency_at(b)
        decision = alt.tracker.choose(b)
        assert decision.route is Route.NEURAL and "faster" in decision.reason
    x = _inputs(0, 64)
    y = alt(x)
    np.testing.assert_allclose(y, alt.neural(x))  # the network served the call
    assert alt.tracker.relative_error(y, _fast(x)) <= SLOW.error_budget
    assert alt.tracker.calls() == {"neural": 1, "algorithm": 0}


def test_fast_algorithm_keeps_the_call_even_with_an_accurate_network(
    good_net: nn.Module,
) -> None:
    alt = NeuralAlternative(FAST, good_net)
    v = alt.tracker.validation
    assert v is not None and v.within_budget
    logger.info("fast vs network: %s", v.to_dict())
    decision = alt.tracker.choose(64)
    assert decision.route is Route.ALGORITHM and "slower" in decision.reason, decision
    x = _inputs(1, 64)
    assert np.array_equal(alt(x), FAST.run(x))  # exactly the algorithm's output
    assert alt.tracker.calls() == {"neural": 0, "algorithm": 1}


def test_network_over_budget_is_not_used_however_fast() -> None:
    alt = NeuralAlternative(SLOW, _untrained())
    v = alt.tracker.validation
    assert v is not None and not v.within_budget and v.error > SLOW.error_budget
    logger.info("slow vs untrained network: error %.3g", v.error)
    assert v.latency_at(64).neural_faster  # faster, and still refused
    assert alt.tracker.state is TrackerState.OVER_BUDGET
    decision = alt.tracker.choose(64)
    assert decision.route is Route.ALGORITHM and "> budget" in decision.reason
    x = _inputs(2, 4)
    assert np.array_equal(alt(x), SLOW.run(x))


def test_unvalidated_alternative_serves_the_algorithm(good_net: nn.Module) -> None:
    alt = NeuralAlternative(SLOW, good_net, validate=False)
    assert alt.tracker.state is TrackerState.UNVALIDATED
    assert alt.tracker.choose(1).route is Route.ALGORITHM
    x = _inputs(3, 2)
    assert np.array_equal(alt(x), SLOW.run(x))


def test_routing_follows_the_nearest_measured_batch_size() -> None:
    from selfimprove.alternatives import LatencyComparison, Validation

    tracker = PerformanceTracker("toy", 0.1, 1.0, batch_sizes=(1, 64))
    tracker.adopt(
        Validation(
            0.01,
            0.1,
            100,
            (LatencyComparison(1, 0.01, 0.05, 5), LatencyComparison(64, 1.0, 0.1, 5)),
        )
    )
    assert [tracker.choose(b).route for b in (1, 4, 16, 64, 1000)] == [
        Route.ALGORITHM,
        Route.ALGORITHM,  # log2 distance 2 to batch 1, 4 to batch 64
        Route.NEURAL,  # 4 from batch 1, 2 from batch 64
        Route.NEURAL,
        Route.NEURAL,
    ]
    assert tracker.summary()["routes"] == {"1": "algorithm", "64": "neural"}


# ---------------------------------------------------------------------- shadow checks, drift
def test_shadow_checks_in_distribution_keep_the_network(good_net: nn.Module) -> None:
    op = replace(SLOW, name="alt_wave_steady")
    alt = NeuralAlternative(op, good_net, tracker=_tracker(op, shadow_every=3, window=6))
    for i in range(12):
        alt(_inputs(100 + i, 8))
    s = alt.summary()
    assert s["state"] == "enabled" and s["calls"] == {"neural": 12, "algorithm": 0}
    assert s["shadow"]["checks"] == 4  # calls 3, 6, 9, 12
    assert s["shadow"]["window_error"] <= op.error_budget
    logger.info("steady shadow errors: %s", s["shadow"])


def test_input_shift_makes_it_fall_back_with_the_reason(good_net: nn.Module) -> None:
    op = replace(SLOW, name="alt_wave_shift")
    alt = NeuralAlternative(op, good_net, tracker=_tracker(op, shadow_every=2, min_shadows=3))
    assert alt.tracker.choose(8).route is Route.NEURAL
    routes = []
    for i in range(10):
        x = _inputs(200 + i, 8, low=2.0, high=3.0)  # far outside the training range [-1, 1]
        routes.append(alt.tracker.choose(8).route)
        alt(x)
    s = alt.summary()
    logger.info("after the input shift: %s", s["shadow"])
    assert s["state"] == "fallback" and s["fallbacks"] == 1
    assert s["reason"].startswith("drift:") and "exceeds the budget" in s["reason"]
    assert s["shadow"]["checks"] == 3 and s["shadow"]["window_error"] > op.error_budget
    # Neural until the third shadow check (the 6th call), the algorithm from then on.
    assert routes == [Route.NEURAL] * 6 + [Route.ALGORITHM] * 4
    assert s["calls"] == {"neural": 6, "algorithm": 4} and s["route"] == "algorithm"
    assert s["switches"][-1]["to"] == "fallback"


def test_changed_algorithm_falls_back_and_revalidation_reenables(good_net: nn.Module) -> None:
    algo = _Shiftable()
    op = replace(SLOW, name="alt_wave_drift", algorithm=algo)
    alt = NeuralAlternative(op, good_net, tracker=_tracker(op, shadow_every=1, min_shadows=3))
    assert alt.tracker.state is TrackerState.ENABLED
    algo.shift = 0.5  # the ground truth moves
    for i in range(5):
        alt(_inputs(300 + i, 4))
    assert alt.tracker.state is TrackerState.FALLBACK and "drift" in alt.tracker.reason
    x = _inputs(310, 4)
    assert np.array_equal(alt(x), op.run(x))  # served by the (new) algorithm
    v = alt.revalidate()  # the same network against the moved algorithm: still refused
    assert not v.within_budget and alt.tracker.state is TrackerState.OVER_BUDGET
    algo.shift = 0.0  # back as it was: a new validation re-opens the neural path
    assert alt.revalidate().within_budget
    assert alt.tracker.state is TrackerState.ENABLED
    assert alt.tracker.choose(4).route is Route.NEURAL
    assert alt.tracker.summary()["validations"] == 3


def test_non_finite_network_output_falls_back_at_once(good_net: nn.Sequential) -> None:
    alt = NeuralAlternative(SLOW, copy.deepcopy(good_net))
    broken = copy.deepcopy(good_net)
    head = broken[-1]
    assert isinstance(head, nn.Linear)
    with torch.no_grad():
        head.bias.fill_(float("nan"))
    alt.replace_module(broken, validate=False)
    x = _inputs(4, 8)
    y = alt(x)
    assert np.isfinite(y).all() and np.array_equal(y, SLOW.run(x))
    assert alt.tracker.state is TrackerState.FALLBACK and "not finite" in alt.tracker.reason


# ---------------------------------------------------------------------- generated data
def test_generated_data_is_seeded_and_labelled_by_the_algorithm() -> None:
    a, b, c = operation_task(FAST), operation_task(FAST), operation_task(FAST, data_seed=1)
    for split in ("train", "validation", "test"):
        sa, sb = a.splits().get(split), b.splits().get(split)
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
        labels = torch.from_numpy(_fast(sa.x.numpy()).astype(np.float32))
        assert torch.allclose(sa.y, labels)
        slow_labels = torch.from_numpy(_slow(sa.x[:50].numpy()).astype(np.float32))
        assert torch.allclose(sa.y[:50], slow_labels, atol=1e-5)  # same function, other route
    assert not torch.equal(a.splits().train.x, c.splits().train.x)
    target = a.primary.target
    assert target == pytest.approx(FAST.error_budget * output_scale(a.splits().train.y.numpy()))
    assert a.family == "neural_alternative"


def test_operation_misdefinitions_are_explained() -> None:
    with pytest.raises(TaskError, match="error_budget"):
        _op("bad_budget", error_budget=0.0)
    with pytest.raises(TaskError, match="simple identifier"):
        _op("bad name")
    wrong = _op("wrong_shape", lambda x: x[:, :1])
    with pytest.raises(TaskError, match=r"must return shape \(5, 2\)"):
        operation_data(wrong, n=5)
    with pytest.raises(TaskError, match=r"batch of shape \(N, 2\)"):
        FAST.run(np.zeros(2))
    with pytest.raises(TaskError, match="do not vary"):
        operation_task(_op("constant", lambda x: np.zeros((len(x), 2))))
    with pytest.raises(ConfigError, match="shadow_every"):
        PerformanceTracker("t", 0.1, 1.0, shadow_every=0)
    with pytest.raises(ConfigError, match="min_shadows"):
        PerformanceTracker("t", 0.1, 1.0, window=3, min_shadows=4)
    with pytest.raises(ConfigError, match="from_registry"):
        NeuralAlternative(FAST, _untrained(), validate=False).refresh()


# ---------------------------------------------------------------------- registry and loop
def test_register_alternative_reloads_identically_and_the_loop_improves_it(
    improver: SelfImprover,
) -> None:
    op = replace(FAST, name="alt_wave_registered")
    alt = register_alternative(improver, op, seed=3)
    assert alt.model_name == op.name and alt.version == 1
    loaded = improver.load(op.name)
    assert loaded.task.family == "neural_alternative"
    x = _inputs(5, 32)
    with torch.inference_mode():
        reloaded = loaded.module(torch.from_numpy(x)).numpy()
    assert np.array_equal(reloaded, alt.neural(x))
    # The first model is deliberately weak: over budget, so the algorithm serves.
    assert alt.tracker.state is TrackerState.OVER_BUDGET
    before = alt.tracker.validation
    assert before is not None

    (outcome,) = improver.run(1, models=[op.name], planned=False)
    assert outcome.status == "completed" and outcome.experiment_id is not None
    (exp,) = improver.history(op.name)
    assert exp.id == outcome.experiment_id and exp.status.value == "completed"
    logger.info(
        "loop on %s: %s, mse %.4g -> %.4g (p=%s)",
        op.name,
        outcome.decision,
        outcome.before,
        outcome.after,
        outcome.p_value,
    )
    assert alt.refresh() is outcome.promoted
    assert alt.version == improver.registry.incumbent(op.name).number
    after = alt.tracker.validation
    assert after is not None
    if outcome.promoted:
        assert after.error < before.error
    # Registering again loads what is there; nothing new is trained.
    again = register_alternative(improver, op, seed=3)
    assert again.version == alt.version and len(improver.registry.versions(op.name)) == 2


# ---------------------------------------------------------------------- threads, report
def test_concurrent_calls_keep_consistent_counts(good_net: nn.Module) -> None:
    op = replace(SLOW, name="alt_wave_threads")
    alt = NeuralAlternative(op, good_net, tracker=_tracker(op, shadow_every=3))
    assert alt.tracker.choose(1).route is Route.NEURAL
    errors: list[BaseException] = []
    per_thread, threads = 30, 4

    def work(seed: int) -> None:
        try:
            for i in range(per_thread):
                x = _inputs(seed * 1000 + i, 1 + i % 3)
                y = alt(x)
                assert y.shape == (len(x), 2)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    s = alt.summary()
    total = per_thread * threads
    assert s["calls"]["neural"] + s["calls"]["algorithm"] == total
    assert s["calls"]["neural"] == total  # within budget and faster at every size used
    assert s["shadow"]["checks"] == total // 3
    assert s["state"] == "enabled" and s["route"] == "neural"
    json.dumps(s)  # the report is plain data
    assert s["latency_ms"]["served_median"]["neural"] > 0
