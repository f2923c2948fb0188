"""Built-in operations: hormone response, trigger activation, memory consolidation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from selfimprove.alternatives import NeuralAlternative, Operation, Route, TrackerState
from selfimprove.alternatives.builtin import (
    ALTERNATIVE_TASKS,
    HORMONES,
    MEMORY_BOTTLENECK,
    OPERATIONS,
    TRIGGER_POPULATION,
    TRIGGER_SEED,
    HormoneNeuralIntegration,
    build_bottleneck_mlp,
    encode_hormone_input,
    hormone_response,
    hormone_response_operation,
    memory_consolidation,
    memory_consolidation_operation,
    trigger_activation_operation,
)
from selfimprove.brain.environment import FEATURES
from selfimprove.brain.hormones import HormoneEvent, HormoneSystemController
from selfimprove.brain.triggers import FAMILIES, GeneticTriggerSystem
from selfimprove.errors import ConfigError, TaskError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.seeding import numpy_rng, torch_seeded
from selfimprove.tasks import MLP_SPACE, SupervisedTask

logger = logging.getLogger(__name__)

NAMES = sorted(ALTERNATIVE_TASKS)


def _trained(task: SupervisedTask, epochs: int = 20, seed: int = 0) -> nn.Module:
    with torch_seeded(seed):
        module = task.build(task.default_params())
    train_(module, task, TrainConfig(epochs=epochs, lr=3e-3, seed=seed, patience=0))
    return module.eval()


@pytest.mark.parametrize("name", NAMES)
def test_builtin_operation_task_builds_and_its_algorithm_is_deterministic(name: str) -> None:
    task, op = ALTERNATIVE_TASKS[name](), OPERATIONS[name]()
    assert task.name == op.name == name
    s = task.splits()
    n = len(s.train) + len(s.validation) + len(s.test)
    assert n == op.n_examples and abs(len(s.train) / n - 0.6) < 0.01
    assert s.train.x.shape[1] == op.in_features
    for params in (task.initial_params(), task.default_params()):
        out = task.build(params)(s.validation.x[:5])
        assert out.shape == (5, s.validation.y.shape[1])
    x = op.sample(numpy_rng("test", name), 64)
    first = op.run(x)
    assert first.shape == (64, op.out_features) and np.isfinite(first).all()
    assert np.array_equal(first, op.run(x.copy()))  # same inputs, same outputs
    np.testing.assert_allclose(first[:7], op.run(x[:7]), atol=1e-6)  # rows stand alone
    assert ALTERNATIVE_TASKS[name]().splits().test.x.equal(s.test.x)  # seeded data


@pytest.mark.parametrize("name", ["hormone_response", "trigger_activation"])
def test_labels_are_the_algorithm_outputs(name: str) -> None:
    task, op = ALTERNATIVE_TASKS[name](), OPERATIONS[name]()
    for split in ("train", "test"):
        data = task.splits().get(split)
        assert torch.allclose(data.y, torch.from_numpy(op.run(data.x.numpy())))


# ---------------------------------------------------------------------- hormone response
def _controller(levels: list[float], event: str, gain: float, cycles: float) -> list[float]:
    ctrl = HormoneSystemController(levels=dict(zip(HORMONES, levels, strict=True)))
    ctrl.on_event(event, gain)
    ctrl.tick(cycles)
    return [ctrl.level(h) for h in HORMONES]


# (dopamine, serotonin, cortisol, adrenaline), event, gain, cycles -> worked out by hand from
# the controller's rules (half-lives 3, 6, 3, 2 cycles; baselines 0.5, 0.5, 0.3, 0.2).
HAND_CASES = [
    ([0.5, 0.5, 0.3, 0.2], "promotion", 0.3, 0.0, [0.8, 0.5, 0.3, 0.2]),
    ([0.2, 0.5, 0.3, 0.2], "promotion", 0.8, 0.0, [0.7, 0.5, 0.3, 0.2]),  # gain capped at 0.5
    ([0.5, 0.5, 0.5, 0.2], "rejection", 0.0, 3.0, [0.5, 0.5, 0.425, 0.2]),  # (0.55-0.3)/2+0.3
    (
        [0.9, 0.5, 0.95, 1.0],
        "failure",
        0.0,
        2.0,
        [0.5 + 0.4 * 2 ** (-2 / 3), 0.5, 0.3 + 0.7 * 2 ** (-2 / 3), 0.6],  # cortisol capped at 1
    ),
    ([0.5, 0.9, 0.3, 0.95], "latency_missed", 0.0, 6.0, [0.5, 0.7, 0.3, 0.2 + 0.8 / 8]),
]


@pytest.mark.parametrize(("levels", "event", "gain", "cycles", "expected"), HAND_CASES)
def test_hormone_response_matches_the_controller_by_hand(
    levels: list[float], event: str, gain: float, cycles: float, expected: list[float]
) -> None:
    row = encode_hormone_input(dict(zip(HORMONES, levels, strict=True)), event, gain, cycles)
    got = hormone_response_operation().run(row[None, :])[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got, _controller(levels, event, gain, cycles), atol=1e-6)


def test_hormone_task_labels_equal_the_controller_row_by_row() -> None:
    data = hormone_response().splits().validation
    for x, y in zip(data.x[:40].numpy(), data.y[:40].numpy(), strict=True):
        event = list(HormoneEvent)[int(np.argmax(x[4:8]))].value
        expected = _controller(list(x[:4]), event, float(x[8]), float(x[9]))
        np.testing.assert_allclose(y, expected, atol=1e-6)


def test_hormone_input_is_checked() -> None:
    with pytest.raises(ConfigError, match="missing"):
        encode_hormone_input({"dopamine": 0.5}, "promotion", 0.1, 1.0)
    with pytest.raises(ConfigError, match="unknown hormone event"):
        encode_hormone_input(dict.fromkeys(HORMONES, 0.5), "party", 0.1, 1.0)
    with pytest.raises(ConfigError, match="cycles"):
        encode_hormone_input(dict.fromkeys(HORMONES, 0.5), "promotion", 0.1, -1.0)


def test_hormone_integration_routes_through_the_tracker(improver: SelfImprover) -> None:
    ctrl = HormoneSystemController(levels={"dopamine": 0.9, "cortisol": 0.1})
    hni = HormoneNeuralIntegration.create(improver, hormone_system=ctrl, seed=0)
    alt = hni.alternative
    # The registered first model is deliberately weak: over budget, the algorithm answers,
    # exactly as the controller would.
    assert alt.tracker.state is TrackerState.OVER_BUDGET
    got = hni.response(event="promotion", gain=0.2, cycles=1.0)
    want = _controller([0.9, 0.5, 0.1, 0.2], "promotion", 0.2, 1.0)
    np.testing.assert_allclose([got[h] for h in HORMONES], want, atol=1e-6)
    assert ctrl.level("dopamine") == pytest.approx(0.9)  # the controller is left alone

    # A network trained for 40 epochs is within the 1 % budget and far faster in batches.
    alt.replace_module(_trained(hormone_response(), epochs=40))
    v = alt.tracker.validation
    assert v is not None
    logger.info("hormone_response alternative: %s", v.to_dict())
    assert v.within_budget, v.error
    assert v.latency_at(64).neural_faster
    assert alt.tracker.choose(64).route is Route.NEURAL
    route_1 = alt.tracker.choose(1).route
    got = hni.response(
        levels={"dopamine": 0.4, "serotonin": 0.6, "cortisol": 0.5, "adrenaline": 0.3},
        event="rejection",
        cycles=2.0,
    )
    want = _controller([0.4, 0.6, 0.5, 0.3], "rejection", 0.0, 2.0)
    assert max(abs(got[h] - w) for h, w in zip(HORMONES, want, strict=True)) < 0.1
    assert hni.summary()["calls"][route_1.value] == 1 + (route_1 is Route.ALGORITHM)
    with pytest.raises(ConfigError, match="DEFAULT_HORMONES"):
        HormoneNeuralIntegration(HormoneSystemController(specs=()), alt)


# ---------------------------------------------------------------------- trigger activation
def test_trigger_activation_is_the_log_boost_of_a_fixed_population() -> None:
    op = trigger_activation_operation()
    system = GeneticTriggerSystem(TRIGGER_POPULATION, seed=TRIGGER_SEED)  # rebuilt independently
    envs = np.vstack([np.zeros(6), np.ones(6), numpy_rng("test", "env").random((30, 6))])
    got = op.run(envs)
    for row, out in zip(envs.astype(np.float32), got, strict=True):
        env = dict(zip(FEATURES, map(float, row), strict=True))
        for fam, value in zip(FAMILIES, out, strict=True):
            # Product of the boosts of active triggers of that family, computed from the genomes.
            boost = math.prod(
                t.boost for t in system.population if t.family == fam and t.active(env)
            )
            assert value == pytest.approx(math.log(boost), abs=1e-6)
    assert (got == 0).any() and (got > 0).any()  # some families boosted, some not


# ---------------------------------------------------------------------- memory consolidation
def test_memory_autoencoder_always_has_its_bottleneck() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        params = {"width": int(rng.integers(8, 512)), "depth": int(rng.integers(1, 5))}
        widths = [
            m.out_features
            for m in build_bottleneck_mlp(32, MEMORY_BOTTLENECK, params)
            if isinstance(m, nn.Linear)
        ]
        assert min(widths) == MEMORY_BOTTLENECK and widths[-1] == 32
    assert set(MLP_SPACE) >= {"width", "depth"}
    pruned = build_bottleneck_mlp(32, MEMORY_BOTTLENECK, {"widths": [40, 6, 40]})
    assert [m.out_features for m in pruned if isinstance(m, nn.Linear)] == [40, 6, 40, 32]
    with pytest.raises(TaskError, match="bottleneck"):
        build_bottleneck_mlp(32, MEMORY_BOTTLENECK, {"widths": [64, 64]})


def test_memory_autoencoder_against_pca() -> None:
    task, op = memory_consolidation(), memory_consolidation_operation()
    test = task.splits().test
    assert torch.equal(test.y, test.x)  # an autoencoder: the labels are the inputs
    t0 = time.perf_counter()
    ae = _trained(task, epochs=20)
    seconds = time.perf_counter() - t0
    x = test.x.numpy()  # (600, 32)
    with torch.inference_mode():
        ae_mse = float(np.mean((ae(test.x).numpy() - x) ** 2))
    pca_mse = float(np.mean((op.run(x) - x) ** 2))
    variance = float(x.var(axis=0).mean())
    logger.info(
        "memory_consolidation on test: autoencoder mse %.5f, PCA mse %.5f (input variance "
        "%.3f, 20 epochs in %.2f s)",
        ae_mse,
        pca_mse,
        variance,
        seconds,
    )
    assert pca_mse < 0.02 * variance  # 8 components keep the rank-6 signal
    assert ae_mse < 0.05 * variance  # so does the 8-unit bottleneck, after 20 epochs
    assert ae_mse < 2.0 * pca_mse
    alt = NeuralAlternative(op, ae)
    v = alt.tracker.validation
    assert v is not None
    logger.info("memory_consolidation alternative vs PCA: %s", v.to_dict())
    assert v.within_budget  # close to PCA's reconstruction...
    assert not v.latency_at(64).neural_faster  # ...but PCA is two matrix products: it serves
    assert alt.tracker.choose(64).route is Route.ALGORITHM


@pytest.mark.parametrize("name", NAMES)
def test_twenty_epochs_are_cheap_and_routing_follows_the_validation(name: str) -> None:
    task, op = ALTERNATIVE_TASKS[name](), OPERATIONS[name]()
    t0 = time.perf_counter()
    module = _trained(task, epochs=20)
    seconds = time.perf_counter() - t0
    assert seconds < 6.0  # about 1 s here; generous for a shared machine
    alt = NeuralAlternative(op, module)
    v = alt.tracker.validation
    assert v is not None
    logger.info("%s: 20 epochs in %.2f s; validation %s", name, seconds, v.to_dict())
    for b in (1, 64):
        expected = v.within_budget and v.latency_at(b).neural_faster
        assert (alt.tracker.choose(b).route is Route.NEURAL) is expected


def test_operations_table_matches_the_tasks() -> None:
    assert set(OPERATIONS) == set(ALTERNATIVE_TASKS)
    ops: list[Callable[[], Operation]] = list(OPERATIONS.values())
    assert all(isinstance(f(), Operation) for f in ops)
    assert all(0 < f().error_budget < 1 for f in ops)
