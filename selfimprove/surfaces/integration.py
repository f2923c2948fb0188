"""`SelfImprovementIntegration`: the seed-000 facade that other programs (and MCP hosts) call.

Every method is async and returns plain data (dicts and lists of JSON-safe values), so the
same results can be handed to an MCP client, a web page or a script. The facade owns a
:class:`SelfImprovingNeuralSystem`; ``initialize`` registers the built-in models into an empty
store and starts the background loop when ``config.auto_start`` says so; ``shutdown`` stops it
and releases every worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from dataclasses import replace
from typing import Any

from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.loop.experiment import ExperimentOutcome
from selfimprove.loop.system import SelfImprovingNeuralSystem
from selfimprove.store import clean_json
from selfimprove.strategies import STRATEGIES, get_strategy
from selfimprove.surfaces.mcp_server import register_tools

__all__ = ["SelfImprovementIntegration", "outcome_to_dict"]

logger = logging.getLogger(__name__)


def outcome_to_dict(o: ExperimentOutcome) -> dict[str, Any]:
    """An outcome as JSON-safe data."""
    d = {k: getattr(o, k) for k in o.__dataclass_fields__}
    d["decision"] = o.decision.value if o.decision else None
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


class SelfImprovementIntegration:
    """The system as a component of a larger host.

    Args:
        enhanced_mcp: An MCP server (``mcp.server.MCPServer``) to register the integration's
            tools on during :meth:`initialize`; ``None`` for none.
        config: Loop settings (``auto_start`` and ``improvement_interval`` are honoured).
        home: Home folder (default ``$SELFIMPROVE_HOME`` or ``./.selfimprove``).
        seed: Base seed.
        system: An existing system to wrap (then ``config``, ``home`` and ``seed`` are its own).
        read_only: When registering tools on ``enhanced_mcp``, only the tools that read.
    """

    def __init__(
        self,
        enhanced_mcp: Any = None,
        config: SelfImprovementConfig | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        seed: int = 0,
        system: SelfImprovingNeuralSystem | None = None,
        read_only: bool = False,
    ) -> None:
        self.enhanced_mcp = enhanced_mcp
        self.system = system or SelfImprovingNeuralSystem(home=home, config=config, seed=seed)
        self.config = self.system.config
        self.read_only = read_only
        self.initialized = False

    @property
    def store(self) -> Any:
        return self.system.store

    async def initialize(self) -> dict[str, Any]:
        """Register built-in models into an empty store, start the loop if ``auto_start``, and
        register the tools on ``enhanced_mcp`` when one was given."""
        await self.system.initialize()
        if self.enhanced_mcp is not None:
            register_tools(self.enhanced_mcp, self, read_only=self.read_only)
        self.initialized = True
        return {
            "initialized": True,
            "running": self.system.running,
            "models": [m.name for m in self.store.list_models()],
        }

    async def add_custom_improvement_task(
        self, model_id: str, improvement_type: str = "training", priority: float = 1.0
    ) -> dict[str, Any]:
        """Queue a user's task for the next cycle (see the system's method)."""
        task = await self.system.add_custom_improvement_task(model_id, improvement_type, priority)
        return clean_json(task.to_dict())

    async def optimize_specific_model(
        self, model_id: str, strategy: str = "auto", params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run one judged experiment on ``model_id`` now.

        With ``strategy="auto"`` the system's own plan for that model decides the kind and the
        strategy (bandit, hormones, triggers); a model without a weakness is left alone and the
        result says so. A strategy name runs that strategy, with ``params`` as its settings.

        Raises:
            NotFoundError: Unknown model or strategy.
            ConfigError: ``params`` with ``"auto"``, or a setting the strategy does not know or
                a bad value (checked before anything is recorded).
        """
        self.store.get_model(model_id)
        if strategy == "auto":
            if params:
                raise ConfigError(
                    "params are a strategy's settings: name the strategy (e.g. "
                    "strategy='train', params={'lr': 0.001}), or leave params out for 'auto'."
                )
            observations, _ = await asyncio.to_thread(self.system.cycle.observe, [model_id])
            if model_id not in observations:
                return {
                    "model": model_id,
                    "status": "skipped",
                    "reason": self.system.cycle.unusable.get(model_id, "checkpoint unusable"),
                }
            env = await asyncio.to_thread(self.system.brain_state.environment)
            planned = self.system.plan(observations, env)
            if not planned:
                return {
                    "model": model_id,
                    "status": "skipped",
                    "reason": "no weakness: every objective meets its target",
                }
            task = planned[0]
        else:
            if strategy not in STRATEGIES:
                raise NotFoundError(
                    f"unknown strategy {strategy!r}; use 'auto' or one of "
                    f"{', '.join(sorted(STRATEGIES))}."
                )
            checked = get_strategy(strategy).check_params(params, self.system.cycle.budget())
            task = replace(self.system.custom_task(model_id, strategy, 1.0), params=checked)
        outcome = await self.system.execute_improvement_task(task)
        return {**outcome_to_dict(outcome), "task": clean_json(task.to_dict())}

    async def get_improvement_status(self) -> dict[str, Any]:
        """Running state, iteration, hormones, triggers, bandit, queue, health."""
        return clean_json(await self.system.get_improvement_status())

    async def get_improvement_history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Experiments, newest first (at most ``limit`` and ``improvement_history_size``)."""
        if limit < 1:
            raise ConfigError(f"limit must be >= 1, but got {limit=}.")
        limit = min(limit, self.config.improvement_history_size)
        names = {m.id: m.name for m in self.store.list_models()}
        out = []
        for e in self.store.list_experiments(limit=limit, newest_first=True):
            st = e.statistics
            out.append(
                {
                    "id": e.id,
                    "cycle": e.cycle,
                    "model": names.get(e.model_id or -1),
                    "strategy": e.strategy,
                    "objective": e.objective,
                    "status": e.status.value,
                    "decision": e.decision.value if e.decision else None,
                    "before": st.get("before"),
                    "after": st.get("after"),
                    "test_before": st.get("test_before"),
                    "test_after": st.get("test_after"),
                    "p_value": st.get("p_value"),
                    "relative_improvement": st.get("relative_improvement"),
                    "reason": e.reason,
                    "finished_at": e.finished_at.isoformat() + "Z" if e.finished_at else None,
                }
            )
        return clean_json(out)

    async def get_model_performance(self, model_id: str) -> dict[str, Any]:
        """The incumbent's figures, its validation history and its experiments' tally.

        Raises:
            NotFoundError: Unknown model.
        """
        model = self.store.get_model(model_id)
        inc = self.system.improver.registry.incumbent(model_id)
        series: dict[str, list[dict[str, Any]]] = {}
        for cap in self.store.list_capabilities(model.id):
            if cap.objective is None:
                continue
            series[cap.objective] = [
                {
                    "time": m.measured_at.isoformat() + "Z",
                    "split": m.split,
                    "value": m.value,
                    "version_id": m.version_id,
                }
                for m in self.store.list_measurements(cap.id)
            ]
        experiments = self.store.list_experiments(model_id=model.id)
        return clean_json(
            {
                "model": model.name,
                "task": model.task,
                "family": model.family,
                "incumbent": {
                    "version": inc.number,
                    "strategy": inc.strategy,
                    "origin": inc.origin,
                    "sha256": inc.sha256,
                    "metrics": inc.metrics,
                    "params": inc.params,
                },
                "versions": len(self.system.improver.registry.versions(model_id)),
                "experiments": len(experiments),
                "promotions": sum(
                    1 for e in experiments if e.decision and e.decision.value == "promote"
                ),
                "measurements": series,
            }
        )

    async def get_system_health_report(self) -> dict[str, Any]:
        """Health (formulas in docs/architecture.md) with the brain state beside it."""
        health = await asyncio.to_thread(self.system.health_report)
        snap = await asyncio.to_thread(self.system.brain_state.snapshot)
        return clean_json(
            {
                **health,
                "hormones": snap["hormones"],
                "active_triggers": [t for t in snap["triggers"] if t["active"]],
                "resources": snap["resources"],
                "models": len(snap["models"]),
                "running": self.system.running,
            }
        )

    async def export_improvement_data(self, fmt: str = "json") -> dict[str, Any] | str:
        """The whole ledger (JSON as a dict) or the experiments table (CSV text)."""
        text = await asyncio.to_thread(self.system.improver.export, fmt)
        return json.loads(text) if fmt == "json" else text

    async def shutdown(self) -> None:
        """Stop the loop after the cycle in progress and release workers and the store."""
        await self.system.stop_self_improvement_loop()
        self.system.close()
        self.initialized = False
