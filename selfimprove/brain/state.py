"""`BrainStateAggregator`: one snapshot of hormones, triggers, models, queue, resources, health.

It reads; it decides nothing. Status, health reports and the dashboard all draw from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psutil

from selfimprove.brain.environment import measure_environment
from selfimprove.brain.hormones import HormoneSystemController
from selfimprove.brain.triggers import GeneticTriggerSystem
from selfimprove.store import Store, utcnow

__all__ = ["BrainStateAggregator"]


class BrainStateAggregator:
    """Collects the state of the brain-inspired components into one plain dict.

    Args:
        store: The ledger (models, experiments).
        hormones: The hormone controller.
        triggers: The genetic trigger system.
        queue: Returns the pending tasks (as dicts).
        health: Returns the health report.
        api_calls: Returns the number of API calls in the last minute.
    """

    def __init__(
        self,
        store: Store,
        hormones: HormoneSystemController,
        triggers: GeneticTriggerSystem,
        *,
        queue: Callable[[], Sequence[dict[str, Any]]] = lambda: [],
        health: Callable[[], dict[str, Any]] = lambda: {},
        api_calls: Callable[[], int] = lambda: 0,
    ) -> None:
        self.store = store
        self.hormones = hormones
        self.triggers = triggers
        self._queue = queue
        self._health = health
        self._api_calls = api_calls

    def environment(self) -> dict[str, float]:
        """The environment vector triggers read, measured now."""
        return measure_environment(
            self.store,
            queue_length=len(self._queue()),
            api_calls_last_minute=self._api_calls(),
        )

    def snapshot(self) -> dict[str, Any]:
        """Everything, now."""
        env = self.environment()
        active = {t.id for t in self.triggers.get_active_triggers(env)}
        proc = psutil.Process()
        return {
            "time": utcnow().isoformat() + "Z",
            "hormones": self.hormones.get_hormone_levels(),
            "steering": {
                "priority_multiplier": self.hormones.priority_multiplier(),
                "exploration": self.hormones.exploration(),
                "budget_multiplier": self.hormones.budget_multiplier(),
            },
            "environment": env,
            "triggers": [{**t, "active": t["id"] in active} for t in self.triggers.summary()],
            "trigger_generation": self.triggers.generation,
            "models": [
                {"name": m.name, "task": m.task, "family": m.family}
                for m in self.store.list_models()
            ],
            "queue": list(self._queue()),
            "resources": {
                "rss_mb": proc.memory_info().rss / 2**20,
                "cpu_count": psutil.cpu_count(),
                "memory_percent": psutil.virtual_memory().percent,
            },
            "health": self._health(),
        }
