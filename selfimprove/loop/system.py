"""`SelfImprovingNeuralSystem`: seed 000's self-improving system, a thin facade.

The cycle itself — observe, plan, execute, judge, learn — is
:class:`~selfimprove.loop.cycle.ImprovementCycle`, the same one
:meth:`SelfImprover.run <selfimprove.loop.improver.SelfImprover.run>` and ``selfimprove run``
drive. This class adds what seed 000 asks of the system around it: the async API
(``run_improvement_cycle``, ``generate_improvement_tasks``, ``add_custom_improvement_task``,
``execute_improvement_task``, ``save_improved_model``), a background loop every
``improvement_interval`` seconds, the hormone response served by its neural alternative, status
and health, and sync wrappers for scripts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from typing import Any

from torch import nn

from selfimprove.alternatives.builtin import HormoneNeuralIntegration
from selfimprove.brain.hormones import HormoneSystemController
from selfimprove.brain.planning import ModelImprovementTask, Observation, TaskRules
from selfimprove.brain.state import BrainStateAggregator
from selfimprove.brain.triggers import GeneticTriggerSystem
from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import ConfigError
from selfimprove.loop.cycle import ImprovementCycle
from selfimprove.loop.executors import Executor, executor_for
from selfimprove.loop.experiment import ExperimentOutcome, ProgressCallback
from selfimprove.loop.health import health_report
from selfimprove.loop.improver import SelfImprover, run_sync
from selfimprove.loop.learning import SelfImprovementMetrics
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.store import VersionRecord

__all__ = ["SelfImprovementMetrics", "SelfImprovingNeuralSystem", "health_report"]

logger = logging.getLogger(__name__)


class SelfImprovingNeuralSystem:
    """Seed 000's self-improving loop over a population of models, with its async lifecycle.

    The first four arguments keep seed 000's signature; each may be ``None`` (the cycle builds
    its own, restored from the store when one was saved).

    Args:
        hormone_integration: Optional neural alternative of the hormone response (see
            :mod:`selfimprove.alternatives`); reported in status when given.
        genetic_system: The trigger population.
        hormone_system: The hormone controller.
        brain_state: The aggregator (built from the others when ``None``).
        home: Home folder (when ``improver`` is not given).
        config: Loop settings (when ``improver`` is not given).
        seed: Base seed of experiments, bandit draws and trigger evolution.
        improver: An existing :class:`SelfImprover` to drive (its cycle becomes this system's).
        rules: Task-generation thresholds.
        executor: Where tasks run (default: a local pool of ``max_concurrent_improvements``).
        cycle: An existing cycle of ``improver`` to drive (then the brain arguments, ``rules``
            and ``executor`` are its own).
        progress: Called as ``progress(event, data)`` while cycles run: ``("planned",
            {"cycle", "tasks", "budget"})`` when a cycle has chosen its experiments, and
            ``("experiment", {"cycle", "outcome"})`` as each is judged (its exceptions are
            logged, not raised). Progress is also logged at ``INFO`` (``logging.basicConfig(
            level=logging.INFO)`` shows it).
    """

    def __init__(
        self,
        hormone_integration: Any = None,
        genetic_system: GeneticTriggerSystem | None = None,
        hormone_system: HormoneSystemController | None = None,
        brain_state: BrainStateAggregator | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        config: SelfImprovementConfig | None = None,
        seed: int = 0,
        improver: SelfImprover | None = None,
        rules: TaskRules | None = None,
        executor: Executor | None = None,
        cycle: ImprovementCycle | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        if executor is None and improver is None and cycle is None:
            # Connected before the store is opened: an address that does not answer is
            # refused with nothing written.
            executor = executor_for(config or SelfImprovementConfig())
        self.improver = improver or SelfImprover(home, config=config, seed=seed)
        self.config = self.improver.config
        self.store = self.improver.store
        self.seed = self.improver.seed
        self.hormone_integration = hormone_integration
        self._api_calls: collections.deque[float] = collections.deque(maxlen=10_000)
        if cycle is not None and improver is None:
            raise ConfigError("a cycle needs the improver it was built on: pass improver= too.")
        self.cycle = cycle or ImprovementCycle(
            self.improver,
            self.improver.loop,
            self.config,
            seed=self.seed,
            hormone_system=hormone_system,
            genetic_system=genetic_system,
            rules=rules,
            executor=executor,
            api_calls=self._api_calls_last_minute,
        )
        if brain_state is not None:
            self.cycle.brain_state = brain_state
        self.cycle.on_outcomes = self._refresh_alternative
        if progress is not None:
            self.cycle.progress = progress
        self.improver.use_cycle(self.cycle)
        self._cycle_lock: asyncio.Lock | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    # ------------------------------------------------------------------ the cycle's state
    @property
    def hormone_system(self) -> HormoneSystemController:
        return self.cycle.hormone_system

    @property
    def genetic_system(self) -> GeneticTriggerSystem:
        return self.cycle.genetic_system

    @property
    def bandit(self) -> StrategyBandit:
        return self.cycle.bandit

    @property
    def brain_state(self) -> BrainStateAggregator:
        return self.cycle.brain_state

    @property
    def rules(self) -> TaskRules:
        return self.cycle.rules

    @property
    def executor(self) -> Executor:
        return self.cycle.executor

    @property
    def iteration(self) -> int:
        """The latest cycle number."""
        return self.cycle.iteration

    @property
    def total_improvements(self) -> int:
        return self.cycle.total_improvements

    @property
    def improvement_history(self) -> collections.deque[dict[str, Any]]:
        return self.cycle.improvement_history

    @property
    def priority_source(self) -> str:
        """``"bandit"`` or ``"gain_model"``: whose expected reward sets planned priorities."""
        return self.cycle.gain.decides

    @property
    def gain_comparison(self) -> dict[str, Any] | None:
        """The latest comparison of the gain model with the bandit (``None`` before one)."""
        return self.cycle.gain.comparison

    @property
    def last_tasks(self) -> list[ModelImprovementTask]:
        return self.cycle.last_tasks

    @property
    def last_outcomes(self) -> list[ExperimentOutcome]:
        return self.cycle.last_outcomes

    @property
    def running(self) -> bool:
        """Whether the background loop is running."""
        return self._loop_task is not None and not self._loop_task.done()

    def _touch(self) -> None:
        self._api_calls.append(time.monotonic())

    def _api_calls_last_minute(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self._api_calls if now - t <= 60)

    # ------------------------------------------------------------------ planning
    def plan(
        self,
        observations: dict[str, Observation],
        env: dict[str, float],
        *,
        limit: int | None = None,
    ) -> list[ModelImprovementTask]:
        """Tasks for this cycle, highest priority first; ``limit``: only the first so many (see
        :meth:`ImprovementCycle.plan`)."""
        return self.cycle.planner.plan(observations, env, limit=limit)

    async def generate_improvement_tasks(self) -> list[ModelImprovementTask]:
        """Observe every model and return this cycle's tasks, highest priority first."""
        self._touch()
        observations, _ = await asyncio.to_thread(self.cycle.observe)
        env = await asyncio.to_thread(self.brain_state.environment)
        return self.plan(observations, env)

    def custom_task(
        self,
        model_id: str,
        improvement_type: str = "training",
        priority: float = 1.0,
        *,
        strategy: str | None = None,
        objective: str | None = None,
    ) -> ModelImprovementTask:
        """A user's task, validated but not queued (see :meth:`add_custom_improvement_task`)."""
        return self.cycle.planner.custom_task(
            model_id, improvement_type, priority, strategy=strategy, objective=objective
        )

    async def add_custom_improvement_task(
        self,
        model_id: str,
        improvement_type: str = "training",
        priority: float = 1.0,
        *,
        strategy: str | None = None,
        objective: str | None = None,
    ) -> ModelImprovementTask:
        """Queue a user's task; it runs in the next cycle ahead of the planned one.

        Args:
            model_id: The model's name.
            improvement_type: A kind (``training``, ``optimisation``, ``architecture``,
                ``distillation``) or a strategy name.
            priority: The user's priority (> 0).
            strategy: A strategy; default: the bandit's choice for the kind.
            objective: The objective; default: the strategy's own, else the task's primary.

        Raises:
            NotFoundError: Unknown model or strategy.
            ConfigError: Unknown kind, or a non-positive priority.
        """
        self._touch()
        task = self.custom_task(
            model_id, improvement_type, priority, strategy=strategy, objective=objective
        )
        self.cycle.planner.enqueue(task)
        return task

    # ------------------------------------------------------------------ execution
    async def execute_improvement_task(
        self, task: ModelImprovementTask, *, cycle: int | None = None
    ) -> ExperimentOutcome:
        """Run one task now (a judged experiment) and learn from it."""
        self._touch()
        return await self.cycle.run_task(task, cycle=cycle)

    async def run_improvement_cycle(
        self, models: list[str] | None = None
    ) -> SelfImprovementMetrics | None:
        """One full cycle (see :mod:`selfimprove.loop.cycle`); ``None`` when disabled.

        Args:
            models: Only these models (default: all). Outcomes are in :attr:`last_outcomes`.
        """
        self._touch()
        if not self.config.enabled:
            logger.info("self-improvement is disabled (config.enabled=False): no cycle run")
            return None
        if self._cycle_lock is None:
            self._cycle_lock = asyncio.Lock()
        async with self._cycle_lock:
            return await self.cycle.run(models)

    def _refresh_alternative(self, outcomes: list[ExperimentOutcome]) -> None:
        """Serve a newly promoted ``hormone_response`` model through the alternative."""
        if self.hormone_integration is None or not any(
            o.promoted and o.model == "hormone_response" for o in outcomes
        ):
            return
        refresh = getattr(getattr(self.hormone_integration, "alternative", None), "refresh", None)
        if callable(refresh):
            refresh()

    async def save_improved_model(
        self,
        model_id: str,
        module: nn.Module,
        params: dict[str, Any],
        *,
        strategy: str = "external",
        metrics: dict[str, Any] | None = None,
    ) -> VersionRecord:
        """Save a model improved outside the loop as a *candidate* version of ``model_id``.

        It is not promoted: run ``improve`` or the loop to have it judged, or promote it by
        hand through the registry.
        """
        self._touch()
        model = self.store.get_model(model_id)
        parent = self.improver.registry.incumbent(model_id)
        return await asyncio.to_thread(
            self.improver.registry.save_version,
            model,
            module,
            params,
            parent=parent,
            strategy=strategy,
            origin="external",
            metrics=metrics or {},
        )

    # ------------------------------------------------------------------ the background loop
    async def initialize(self) -> None:
        """Register the built-in models into an empty store, serve the hormone response through
        its neural alternative (``HormoneNeuralIntegration``) when that model exists, and start
        the background loop when ``config.auto_start`` (and ``config.enabled``) say so."""
        self._touch()
        if not self.store.list_models():
            await asyncio.to_thread(self.improver.ensure_builtin_models)
        if self.hormone_integration is None and self.store.find_model("hormone_response"):
            self.hormone_integration = await asyncio.to_thread(
                HormoneNeuralIntegration.create,
                self.improver,
                hormone_system=self.hormone_system,
                seed=self.seed,
            )
        if self.config.auto_start and self.config.enabled:
            await self.start_self_improvement_loop()

    async def start_self_improvement_loop(self) -> None:
        """Run cycles every ``improvement_interval`` seconds in the background.

        Raises:
            ConfigError: The system is disabled (``config.enabled=False``).
        """
        self._touch()
        if not self.config.enabled:
            raise ConfigError(
                "self-improvement is disabled: set SelfImprovementConfig(enabled=True)."
            )
        if self.running:
            return
        self._stop = asyncio.Event()
        self._loop_task = asyncio.create_task(self._run_forever(), name="selfimprove-loop")

    async def _run_forever(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await self.run_improvement_cycle()
            except Exception:  # the loop must survive one bad cycle; the error is logged
                logger.exception("improvement cycle failed; the loop goes on")
            with contextlib.suppress(TimeoutError):  # the interval passed: next cycle
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.improvement_interval)

    async def stop_self_improvement_loop(self) -> None:
        """Stop the background loop after the cycle in progress, and release the workers and
        the store's heartbeat thread."""
        self._touch()
        if self._stop is not None:
            self._stop.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        self.executor.close()
        self.store.release_heartbeat()

    async def force_improvement_cycle(self) -> SelfImprovementMetrics | None:
        """Run a cycle now, even while the background loop sleeps (never two at once)."""
        return await self.run_improvement_cycle()

    # ------------------------------------------------------------------ reports
    def health_report(self) -> dict[str, Any]:
        """Health from measured records (see :func:`health_report`)."""
        return health_report(self.store)

    async def get_improvement_status(self) -> dict[str, Any]:
        """Status: iteration, counts, hormones, triggers, bandit, queue, health."""
        self._touch()
        snap = await asyncio.to_thread(self.brain_state.snapshot)
        return {
            "running": self.running,
            "enabled": self.config.enabled,
            "iteration": self.iteration,
            "total_improvements": self.total_improvements,
            "priority_source": self.priority_source,
            "gain_model_vs_bandit": self.gain_comparison,
            "hormone_integration": (
                self.hormone_integration.summary()
                if hasattr(self.hormone_integration, "summary")
                else type(self.hormone_integration).__name__
                if self.hormone_integration is not None
                else None
            ),
            "bandit": {
                f"{k}/{f}": self.bandit.estimates((k, f)) for k, f in self.bandit.contexts()
            },
            "recent": list(self.improvement_history)[-10:],
            "last_metrics": next(iter(self.store.list_cycle_metrics(limit=1)), None),
            **snap,
        }

    # ------------------------------------------------------------------ sync wrappers
    def run_cycle_sync(self, models: list[str] | None = None) -> SelfImprovementMetrics | None:
        """:meth:`run_improvement_cycle` for scripts and notebooks (no running event loop)."""
        return run_sync(lambda: self.run_improvement_cycle(models))

    def generate_tasks_sync(self) -> list[ModelImprovementTask]:
        """:meth:`generate_improvement_tasks` for scripts."""
        return run_sync(self.generate_improvement_tasks)

    def status_sync(self) -> dict[str, Any]:
        """:meth:`get_improvement_status` for scripts."""
        return run_sync(self.get_improvement_status)

    def close(self) -> None:
        """Release the workers, the engine and the store."""
        self.improver.close()

    def __enter__(self) -> SelfImprovingNeuralSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
