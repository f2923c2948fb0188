"""The engine's capabilities: registered, measured and profiled against their targets.

A model objective registered by the neural system is a capability here (named
``<model>/<objective>``). Every measurement brings the capability's weaknesses up to date.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

from selfimprove.engine._profiles import known_capability, profile_of
from selfimprove.engine._types import CapabilityProfile
from selfimprove.engine._weakness_book import Weaknesses
from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.measure.stats import as_direction
from selfimprove.objectives import Direction
from selfimprove.store import CapabilityRecord, Store

__all__ = ["Capabilities", "direction_for"]

logger = logging.getLogger(__name__)


def direction_for(
    name: str, known: Direction | str | None, baseline: float | None, target: float | None
) -> tuple[Direction, str]:
    """A new capability's direction and why: the one given (or already registered), else read
    from baseline and target (a target below the baseline means lower is better).

    Raises:
        ConfigError: Neither given nor readable from baseline and target.
    """
    if known is not None:
        return as_direction(known), "given or registered"
    if baseline is not None and target is not None and baseline != target:
        d = Direction.MINIMIZE if target < baseline else Direction.MAXIMIZE
        return d, f"target {target:g} {'below' if target < baseline else 'above'} baseline"
    raise ConfigError(
        f"capability {name!r}: pass direction='minimize' (lower is better, e.g. latency) or "
        "direction='maximize' (e.g. accuracy); it cannot be read from the baseline and target "
        "given."
    )


class Capabilities:
    """Capability profiling (seed 002): register, measure, profile.

    Args:
        store: The one store.
        weaknesses: Brought up to date after each registration and measurement.
    """

    def __init__(self, store: Store, weaknesses: Weaknesses) -> None:
        self.store = store
        self.weaknesses = weaknesses

    def register_capability(
        self,
        name: str,
        type: str,
        description: str = "",
        baseline: float | None = None,
        target: float | None = None,
        unit: str = "",
        direction: Direction | str | None = None,
    ) -> CapabilityRecord:
        """Register a capability, or update its description, target, unit and direction.

        Idempotent: registering again never drops measurements, and keeps the first baseline.

        Args:
            name: Unique name (the neural system's are ``<model>/<objective>``).
            type: Category (a weakness type such as ``efficiency`` makes its gaps of that type).
            description: What it measures.
            baseline: Value when tracking begins (default: the first measurement).
            target: Value that counts as good enough (``None``: never a weakness).
            unit: Display unit (time and size units make its gaps ``efficiency`` weaknesses).
            direction: ``minimize`` or ``maximize``. When left out it is kept from an earlier
                registration, or read from baseline and target (a target below the baseline
                means lower is better).

        Returns:
            The capability.

        Raises:
            ConfigError: Empty name, non-finite numbers, or a direction that cannot be known.
        """
        if not name or not name.strip():
            raise ConfigError("a capability needs a non-empty name, e.g. 'response_time'.")
        for label, value in (("baseline", baseline), ("target", target)):
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{label} must be a finite number or None, but got {value!r}.")
        if direction is None:
            try:
                direction = self.store.get_capability(name).direction
            except NotFoundError:
                direction = None
        d, _ = direction_for(name, direction, baseline, target)
        cap = self.store.upsert_capability(
            name,
            type=type,
            direction=d.value,
            target=target,
            unit=unit,
            description=description,
            baseline=baseline,
        )
        logger.info("capability %s registered (%s, target %s %s)", name, d.value, target, unit)
        self.weaknesses.update_for(cap)
        return cap

    def measure_capability(
        self, name: str, value: float, context: dict[str, Any] | None = None
    ) -> CapabilityProfile:
        """Record one measurement of a capability and update its weaknesses.

        A gap to the target opens (or updates) a weakness, with this measurement as evidence;
        reaching the target resolves the capability's open weaknesses.

        Args:
            name: A registered capability.
            value: The measured value (in the capability's unit).
            context: Anything worth keeping with it (inputs, version, host).

        Returns:
            The capability's profile after the measurement.

        Raises:
            NotFoundError: Unknown capability.
            ConfigError: A non-finite value.
        """
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"a measurement must be a finite number, but got {value!r}.")
        cap = known_capability(self.store, name)
        self.store.add_measurements(
            cap.id, {"global": float(value)}, context={"source": "engine", **(context or {})}
        )
        if cap.baseline is None:
            self.store.set_capability_baseline(cap.id, float(value))
            cap = self.store.get_capability(name)
        self.weaknesses.update_for(cap)
        return self._profile(cap)

    def _profile(self, cap: CapabilityRecord) -> CapabilityProfile:
        return profile_of(
            cap, self.store.latest_measurement(cap.id), self.store.count_measurements(cap.id)
        )

    def get_capability_profile(self, name: str) -> CapabilityProfile:
        """Where one capability stands (see :class:`CapabilityProfile`).

        Raises:
            NotFoundError: Unknown capability.
        """
        return self._profile(known_capability(self.store, name))

    def profile_all_capabilities(self) -> list[CapabilityProfile]:
        """Every capability with its current value, baseline, target, gap and improvement.

        The neural system's model objectives are included (their current value is the latest
        validation measurement, or the latest global one for latency and size; the test split
        is never used here).
        """
        caps = self.store.list_capabilities()
        if not caps:
            return []
        latest = self.store.latest_measurements()  # every capability in one query, not one each
        counts = self.store.count_measurements_by_capability()
        return [profile_of(c, latest.get(c.id), counts.get(c.id, 0)) for c in caps]
