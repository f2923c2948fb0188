"""`SelfImprovementEngine`: seed 002's ledger of capabilities, weaknesses and experiments.

It is not a second system beside the neural one: it reads and writes the same store. A model
objective registered by the neural system is a capability here (named ``<model>/<objective>``),
a strategy run is an experiment, a promotion is an applied improvement, and what is learnt
about learning goes to the one ``meta_learnings`` table. What the engine adds is the rest of
seed 002: weaknesses with a lifecycle, experiments designed from templates and tested with
statistics, measured improvements, code improvements under approval with an audit trail,
a changelog, and a self-assessment.

Everything is direction-aware (through :class:`~selfimprove.objectives.Objective`): a latency
of 10 s against a 2 s target is a gap of 400 %, i.e. critical, never "at target".

This module holds capabilities, weaknesses, experiments, measurements, the changelog and the
self-assessment; the code-improvement workflow is in :mod:`selfimprove.engine._code` and the
meta-learnings in :mod:`selfimprove.engine._learning`, mixed into the one class. What a
capability's newest value does to its weaknesses is decided in
:mod:`selfimprove.engine._weaknesses`; here it is read for every capability at once and
written where it changes something.
"""

from __future__ import annotations

import getpass
import logging
import math
import numbers
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfimprove.engine._assessment import LearningQuality, learning_quality, success_trend
from selfimprove.engine._code import CodeImprovementMixin
from selfimprove.engine._learning import FINISHED, MetaLearningMixin
from selfimprove.engine._types import (
    TEMPLATES,
    ApproachResult,
    CapabilityProfile,
    SelfAssessment,
    Severity,
    WeaknessType,
    severity_for_gap,
)
from selfimprove.engine._weaknesses import (
    ACTIVE,
    EVIDENCE_KEPT,
    WeaknessAction,
    WeaknessPlan,
    capability_objective,
    plan_weakness,
    priority,
)
from selfimprove.engine.codepatch import parse_command
from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.measure.stats import (
    as_direction,
    compare_samples,
    confidence_level,
    describe_change,
)
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.patterns import PatternLearner
from selfimprove.objectives import Direction
from selfimprove.seeding import derive_seed
from selfimprove.store import (
    CapabilityRecord,
    CodeImprovementStatus,
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    HistoryRecord,
    ImprovementMeasurementRecord,
    MeasurementRecord,
    Store,
    WeaknessRecord,
    WeaknessStatus,
    utcnow,
)

__all__ = ["BANDIT_STATE_KEY", "SelfImprovementEngine"]

logger = logging.getLogger(__name__)

#: Where the engine's bandit lives in the ``state`` table (beside the neural system's
#: ``bandit``: the system rewrites its own key whole at every cycle, so sharing it would drop
#: the engine's arms).
BANDIT_STATE_KEY = "engine_bandit"
#: The bandit context's second part for the engine's experiments (the neural system puts the
#: model family there).
BANDIT_FAMILY = "engine"
_MEASURES = ("time", "value")


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (containers without a passwd entry)
        return f"uid:{os.getuid()}"


def _db_url(db_path: str | os.PathLike[str] | None) -> str | None:
    if db_path is None:
        return None
    text = os.fspath(db_path)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _profile_of(
    cap: CapabilityRecord, m: MeasurementRecord | None, count: int
) -> CapabilityProfile:
    """Where ``cap`` stands, given its newest measurement ``m`` and its number of them."""
    current = m.value if m is not None and math.isfinite(m.value) else None
    gap: float | None = None
    improvement: float | None = None
    if current is None:
        level = "unmeasured"
    elif cap.target is None:
        level = "no_target"
    else:
        obj = capability_objective(cap)
        gap = obj.gap(current)
        level = "at_target" if obj.meets_target(current) else severity_for_gap(gap).value
    if current is not None and cap.baseline is not None and cap.baseline != 0:
        improvement = describe_change(cap.baseline, current, cap.direction).improvement
    return CapabilityProfile(
        id=cap.id,
        name=cap.name,
        type=cap.type,
        description=cap.description,
        direction=cap.direction,
        unit=cap.unit,
        baseline=cap.baseline,
        target=cap.target,
        current=current,
        measurements=count,
        last_measured_at=m.measured_at if m is not None else None,
        gap=gap,
        level=level,
        improvement=improvement,
        model_id=cap.model_id,
        objective=cap.objective,
    )


def _pct(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:+.1%}"


class SelfImprovementEngine(MetaLearningMixin, CodeImprovementMixin):
    """Seed 002's self-improvement engine, on the product's one store.

    Args:
        db_path: A SQLite file path or a SQLAlchemy URL. Default: the home folder's store
            (``$SELFIMPROVE_DB``, else ``<home>/selfimprove.db``), the one the neural system
            writes, so its capabilities appear here.
        auto_improve: Apply code improvements at once (still checked, still audited) instead
            of waiting for :meth:`approve_improvement`.
        home: Home folder (see :func:`selfimprove.config.resolve_home`).
        root: The only folder code improvements may change (default: the working folder).
        check_command: Run before and after a code change, in ``root``; a change that makes it
            fail is rejected and the file restored. A string is split like a shell would (no
            shell runs) or pass a list. If its last line of output is a number (a benchmark's
            timing), that number is the change's measured effect.
        check_timeout_s: Seconds before the check is killed and counts as failed.
        check_repeats: Runs of the check before and after. Its numbers are compared with the
            Mann-Whitney U test, which needs 4 runs a side to reach p < 0.05 at all (5 runs:
            p = 0.008 when every run after beats every run before).
        check_direction: Whether the check's number is better lower (timings) or higher.
        seed: Seeds the bandit's draws and bootstrap intervals.
        actor: Who acts, for the audit trail (default: the operating-system user).

    Attributes:
        improvement_threshold: Relative improvement an experiment must exceed (0.15).
        alpha: Significance level of every test (0.05).

    Raises:
        ConfigError: Bad settings (malformed URL, empty check command, bad numbers).
        SchemaVersionError: The store was written by a newer selfimprove.
    """

    improvement_threshold: float = 0.15
    alpha: float = 0.05

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        auto_improve: bool = False,
        *,
        home: str | os.PathLike[str] | None = None,
        root: str | os.PathLike[str] | None = None,
        check_command: str | Sequence[str] | None = None,
        check_timeout_s: float = 300.0,
        check_repeats: int = 1,
        check_direction: Direction | str = Direction.MINIMIZE,
        seed: int = 0,
        actor: str | None = None,
    ) -> None:
        if check_timeout_s <= 0:
            raise ConfigError(f"check_timeout_s must be > 0, but got {check_timeout_s=}.")
        if check_repeats < 1:
            raise ConfigError(f"check_repeats must be >= 1, but got {check_repeats=}.")
        self.auto_improve = bool(auto_improve)
        self.root = Path(root if root is not None else os.getcwd()).expanduser().resolve()
        self.check_command = parse_command(check_command)
        self.check_timeout_s = float(check_timeout_s)
        self.check_repeats = int(check_repeats)
        self.check_direction = as_direction(check_direction)
        self.seed = seed
        self.actor = actor
        self.store = Store(_db_url(db_path), home=home)
        self.pattern_learner = PatternLearner()

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    def __enter__(self) -> SelfImprovementEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _actor(self, actor: str | None) -> str:
        return actor or self.actor or _whoami()

    def _bandit(self) -> StrategyBandit:
        saved = self.store.load_state(BANDIT_STATE_KEY)
        return StrategyBandit.from_dict(saved) if saved else StrategyBandit(self.seed)

    # ================================================================== capabilities
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
                if baseline is not None and target is not None and baseline != target:
                    direction = Direction.MINIMIZE if target < baseline else Direction.MAXIMIZE
                else:
                    raise ConfigError(
                        f"capability {name!r}: pass direction='minimize' (lower is better, "
                        "e.g. latency) or direction='maximize' (e.g. accuracy); it cannot be "
                        "read from the baseline and target given."
                    ) from None
        d = as_direction(direction)
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
        self._auto_identify_weakness(cap)
        return cap

    def _known_capability(self, name: str) -> CapabilityRecord:
        try:
            return self.store.get_capability(name)
        except NotFoundError:
            known = [c.name for c in self.store.list_capabilities()]
            raise NotFoundError(
                f"unknown capability {name!r}; register it first with register_capability "
                f"(known: {', '.join(known[:20]) or 'none'})."
            ) from None

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
        cap = self._known_capability(name)
        self.store.add_measurements(
            cap.id, {"global": float(value)}, context={"source": "engine", **(context or {})}
        )
        if cap.baseline is None:
            self.store.set_capability_baseline(cap.id, float(value))
            cap = self.store.get_capability(name)
        self._auto_identify_weakness(cap)
        return self._profile(cap)

    def _profile(self, cap: CapabilityRecord) -> CapabilityProfile:
        return _profile_of(
            cap, self.store.latest_measurement(cap.id), self.store.count_measurements(cap.id)
        )

    def get_capability_profile(self, name: str) -> CapabilityProfile:
        """Where one capability stands (see :class:`CapabilityProfile`).

        Raises:
            NotFoundError: Unknown capability.
        """
        return self._profile(self._known_capability(name))

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
        return [_profile_of(c, latest.get(c.id), counts.get(c.id, 0)) for c in caps]

    # ================================================================== weaknesses
    def _event(
        self, kind: str, message: str, payload: dict[str, Any], model_id: int | None = None
    ) -> None:
        self.store.add_event(kind, message, model_id=model_id, payload=payload)

    def _auto_identify_weakness(self, cap: CapabilityRecord) -> WeaknessRecord | None:
        """Open, update or resolve the weaknesses of one capability from its latest value.

        Returns:
            Its automatic weakness when it is short of the target (opened, updated or left
            as it was), else ``None``.
        """
        if cap.target is None:
            return None
        plan = plan_weakness(
            cap,
            self.store.latest_measurement(cap.id),
            self.store.list_weaknesses(statuses=ACTIVE, capability_id=cap.id),
        )
        return self._apply_weakness_plans([plan]).get(cap.id)

    def _auto_identify_weaknesses(self) -> list[WeaknessRecord]:
        """Bring every capability's weaknesses up to date (the neural system measures its
        own capabilities without going through the engine).

        A few statements whatever the number of capabilities: the capabilities, the newest
        measurement of each and every active weakness are read in one query each, and only
        the weaknesses that change are written, together.

        Returns:
            The active weaknesses after it, oldest first.
        """
        caps = self.store.list_capabilities_with_target()
        current = self.store.list_weaknesses(statuses=ACTIVE)
        if not caps:
            return current
        latest = self.store.latest_measurements()
        active: dict[int, list[WeaknessRecord]] = defaultdict(list)
        for w in current:
            if w.capability_id is not None:
                active[w.capability_id].append(w)
        plans = [plan_weakness(c, latest.get(c.id), active.get(c.id, ())) for c in caps]
        after = self._apply_weakness_plans(plans)
        closed = {wid for p in plans if p.action is WeaknessAction.RESOLVE for wid in p.changes}
        now = {w.id: w for w in current if w.id not in closed}
        now.update((w.id, w) for w in after.values() if w is not None)
        return sorted(now.values(), key=lambda w: w.id)

    def _apply_weakness_plans(
        self, plans: Sequence[WeaknessPlan]
    ) -> dict[int, WeaknessRecord | None]:
        """Write what ``plans`` change, in one transaction: the updates together, the new
        weaknesses together, their events together.

        Returns:
            Each plan's automatic weakness after it (``None`` when there is none), by
            capability id.
        """
        after: dict[int, WeaknessRecord | None] = {p.capability_id: p.kept for p in plans}
        changes = {wid: fields for p in plans for wid, fields in p.changes.items()}
        opening = [(p, p.new) for p in plans if p.new is not None]
        if not changes and not opening:
            return after
        events: list[dict[str, Any]] = []
        with self.store.batch():  # all of it or none (part of the caller's batch, if any)
            updated = self.store.update_weaknesses(changes)
            opened = self.store.add_weaknesses([new for _, new in opening])
            for p in plans:
                if p.action is WeaknessAction.RESOLVE:
                    for wid in p.changes:
                        logger.info("weakness %d resolved: %s", wid, p.reason)
                        events.append(
                            {
                                "kind": f"weakness_{WeaknessStatus.RESOLVED.value}",
                                "message": p.reason,
                                "payload": {"weakness_id": wid},
                                "model_id": p.model_id,
                            }
                        )
                elif p.action is WeaknessAction.UPDATE:
                    (wid,) = p.changes
                    after[p.capability_id] = updated[wid]
            for (p, _), w in zip(opening, opened, strict=True):
                logger.info("weakness %d opened: %s", w.id, p.reason)
                events.append(
                    {
                        "kind": "weakness_opened",
                        "message": p.reason,
                        "payload": {"weakness_id": w.id, "severity": w.severity, "gap": w.gap},
                        "model_id": p.model_id,
                    }
                )
                after[p.capability_id] = w
            self.store.add_events(events)
        return after

    def _close_weakness(
        self,
        w: WeaknessRecord,
        status: WeaknessStatus,
        why: str,
        evidence: dict[str, Any] | None = None,
        model_id: int | None = None,
    ) -> WeaknessRecord:
        ev = dict(w.evidence)
        if evidence:
            ev["observations"] = [*ev.get("observations", []), evidence][-EVIDENCE_KEPT:]
        closed = self.store.update_weakness(w.id, status=status, resolution=why, evidence=ev)
        logger.info("weakness %d %s: %s", w.id, status.value, why)
        self._event(f"weakness_{status.value}", why, {"weakness_id": w.id}, model_id)
        return closed

    def identify_weakness(
        self,
        name: str,
        type: WeaknessType | str,
        severity: Severity | str,
        description: str,
        impact: float | None = None,
        *,
        capability: str | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> WeaknessRecord:
        """Register a weakness by hand (or add evidence to the open one of that name).

        Args:
            name: Short name.
            type: ``capability_gap``, ``reliability``, ``efficiency`` or ``output_quality``.
            severity: ``critical``, ``high``, ``medium`` or ``low``.
            description: What is wrong.
            impact: 0 to 1 (default: the severity's, 0.9 / 0.7 / 0.5 / 0.3).
            capability: A capability it concerns (then reaching its target resolves it).
            evidence: What shows it (kept; appended when the weakness is named again).

        Returns:
            The weakness.

        Raises:
            ConfigError: Unknown type or severity, impact outside [0, 1].
            NotFoundError: Unknown capability.
        """
        try:
            wtype = WeaknessType(type)
        except ValueError:
            raise ConfigError(
                f"weakness type must be one of {[t.value for t in WeaknessType]}, but got {type!r}."
            ) from None
        try:
            sev = Severity(severity)
        except ValueError:
            raise ConfigError(
                f"severity must be one of {[s.value for s in Severity]}, but got {severity!r}."
            ) from None
        imp = sev.default_impact if impact is None else float(impact)
        if not 0 <= imp <= 1:
            raise ConfigError(f"impact must be in [0, 1], but got {impact=}.")
        cap = self._known_capability(capability) if capability else None
        obs = {"noted_at": utcnow().isoformat() + "Z", **(evidence or {})}
        for w in self.store.list_weaknesses(statuses=ACTIVE):
            if w.name == name and w.source == "manual":
                return self.store.update_weakness(
                    w.id,
                    type=wtype.value,
                    severity=sev.value,
                    impact=imp,
                    priority=priority(sev.value, imp),
                    description=description,
                    evidence={
                        **w.evidence,
                        "observations": [*w.evidence.get("observations", []), obs][-EVIDENCE_KEPT:],
                    },
                )
        w = self.store.add_weakness(
            name=name,
            type=wtype.value,
            severity=sev.value,
            impact=imp,
            priority=priority(sev.value, imp),
            description=description,
            capability_id=cap.id if cap else None,
            source="manual",
            evidence={"observations": [obs]},
        )
        self._event(
            "weakness_opened",
            description,
            {"weakness_id": w.id, "severity": sev.value},
            cap.model_id if cap else None,
        )
        return w

    def analyze_weaknesses(
        self, min_impact: float = 0.0, *, include_closed: bool = False
    ) -> list[WeaknessRecord]:
        """The weaknesses to work on, most urgent first.

        Brings automatic weaknesses up to date first (every capability's latest value against
        its target), then sorts by priority (severity weight × impact), gap, age.

        Args:
            min_impact: Leave out weaknesses with a lower impact.
            include_closed: Also list resolved and won't-fix ones.

        Returns:
            Weaknesses, highest priority first.
        """
        active = self._auto_identify_weaknesses()
        found = [
            w
            for w in (self.store.list_weaknesses() if include_closed else active)
            if w.impact >= min_impact
        ]
        return sorted(found, key=lambda w: (-w.priority, -(w.gap or 0.0), w.id))

    def set_weakness_status(
        self, weakness_id: int, status: WeaknessStatus | str, note: str = ""
    ) -> WeaknessRecord:
        """Move a weakness along its lifecycle (open → in_progress → resolved / wont_fix).

        Raises:
            NotFoundError: Unknown weakness.
            ConfigError: A move the lifecycle does not allow (e.g. out of ``resolved``).
        """
        new = WeaknessStatus(status)
        w = self.store.get_weakness(weakness_id)
        if new.is_active():
            return self.store.update_weakness(weakness_id, status=new)
        return self._close_weakness(w, new, note or f"marked {new.value} by {self._actor(None)}")

    # ================================================================== experiments
    def generate_experiments(
        self, weakness_id: int, num_experiments: int = 3
    ) -> list[ExperimentRecord]:
        """Design experiments for a weakness from the templates of its type.

        The engine's bandit (Thompson sampling, context ``(weakness type, "engine")``) orders
        the approaches; the first ``num_experiments`` become planned experiments. Each gets a
        hypothesis, a methodology and an expected improvement: the mean measured improvement
        of that approach on that weakness type (meta-learning ``experiment_effectiveness``)
        when there is one, else the template's prior, labelled ``prior``.

        Args:
            weakness_id: An open or in-progress weakness.
            num_experiments: How many (at most one per approach of its type).

        Returns:
            The planned experiments.

        Raises:
            NotFoundError: Unknown weakness.
            ConfigError: A closed weakness, or ``num_experiments < 1``.
        """
        if num_experiments < 1:
            raise ConfigError(f"num_experiments must be >= 1, but got {num_experiments=}.")
        w = self.store.get_weakness(weakness_id)
        if not w.status.is_active():
            raise ConfigError(
                f"weakness {weakness_id} is {w.status.value}; experiments are planned only for "
                "open or in-progress weaknesses."
            )
        wtype = WeaknessType(w.type)
        templates = TEMPLATES[wtype]
        arms = [t.name for t in templates]
        bandit = self._bandit()
        draws = bandit.sample((wtype.value, BANDIT_FAMILY), arms)
        self.store.save_state(BANDIT_STATE_KEY, bandit.to_dict())
        ranked = sorted(templates, key=lambda t: (-draws[t.name], arms.index(t.name)))
        if num_experiments > len(ranked):
            logger.info(
                "weakness %d: %d experiments asked, %d approaches exist for %s",
                weakness_id,
                num_experiments,
                len(ranked),
                wtype.value,
            )
        cap = self.store.list_capabilities()
        cap_by_id = {c.id: c for c in cap}
        capability = cap_by_id.get(w.capability_id) if w.capability_id is not None else None
        subject = capability.name if capability else w.name
        history = [e.strategy for e in self._weakness_sequence(weakness_id)]
        self._fit_patterns()
        predictions = {p.approach: p for p in self.pattern_learner.predict_next(history, arms)}
        specs = []
        for t in ranked[:num_experiments]:
            learnt = self.expected_improvement(wtype.value, t.name)
            if learnt is not None:
                expected, source = learnt[0], f"meta_learning (n={learnt[1]})"
            else:
                expected, source = t.prior_improvement, "prior"
            pred = predictions[t.name]
            specs.append(
                {
                    "model_id": capability.model_id if capability else None,
                    "capability_id": capability.id if capability else None,
                    "objective": capability.objective if capability else None,
                    "strategy": t.name,
                    "hypothesis": (
                        f"{t.hypothesis.format(subject=subject)} Expected improvement "
                        f"{expected:+.0%} ({source})."
                    ),
                    "weakness_id": weakness_id,
                    "expected_improvement": expected,
                    "params": {
                        "source": "engine",
                        "weakness_type": wtype.value,
                        "methodology": t.methodology.format(subject=subject),
                        "expected_source": source,
                        "bandit_draw": draws[t.name],
                        "pattern_prediction": {
                            "probability": pred.probability,
                            "pattern_id": pred.pattern_id,
                            "support": pred.support,
                        },
                    },
                }
            )
        planned = self.store.add_experiments(specs)
        if w.status is WeaknessStatus.OPEN:
            self.store.update_weakness(weakness_id, status=WeaknessStatus.IN_PROGRESS)
        logger.info("weakness %d: planned %s", weakness_id, ", ".join(e.strategy for e in planned))
        return planned

    def _weakness_sequence(self, weakness_id: int) -> list[ExperimentRecord]:
        done = [
            e for e in self.store.list_weakness_experiments(weakness_id) if e.status in FINISHED
        ]
        return sorted(done, key=lambda e: (e.finished_at or e.created_at, e.id))

    def test_approach(
        self,
        experiment_id: int,
        test_function: Callable[[], Any],
        baseline_function: Callable[[], Any] | None = None,
        baseline_value: float | None = None,
        repeats: int = 20,
        *,
        measure: str = "time",
        direction: Direction | str | None = None,
        test: str = "auto",
        warmup: int = 1,
    ) -> ApproachResult:
        """Run an experiment: the approach against the baseline, repeatedly, and judge it.

        The two functions are called alternately (baseline first on even repeats, the approach
        first on odd ones) so that drift in the machine's speed hits both alike. With
        ``measure="time"`` each call's wall-clock time is the sample (lower is better); with
        ``measure="value"`` each call returns the sample (direction from ``direction`` or the
        weakness's capability). Welch's t-test compares means, Mann-Whitney U ranks (``auto``:
        Mann-Whitney for timings, which are skewed, Welch for values); against a
        ``baseline_value`` the one-sample t-test or Wilcoxon signed-rank test is used.

        Success = relative improvement > ``improvement_threshold`` and p < ``alpha``. An
        exception in either function ends the experiment as failed, with the error recorded.
        Afterwards the bandit, the meta-learnings and the pattern learner learn from it.

        Args:
            experiment_id: A planned experiment (e.g. from :meth:`generate_experiments`).
            test_function: The approach, called with no arguments.
            baseline_function: The current way (or give ``baseline_value``).
            baseline_value: A fixed baseline figure instead of a function.
            repeats: Samples of each.
            measure: ``time`` or ``value``.
            direction: For ``value``: which way is better.
            test: ``auto``, ``welch`` or ``mann_whitney``.
            warmup: Unrecorded calls of each before sampling.

        Returns:
            The result, also stored with the experiment (statistics, decision, reason).

        Raises:
            NotFoundError: Unknown experiment.
            ConfigError: The experiment already ran, or the arguments do not fit together.
        """
        exp = self.store.get_experiment(experiment_id)
        runnable = exp.status is ExperimentStatus.PLANNED or (
            exp.status is ExperimentStatus.STALE and exp.started_at is None
        )
        if not runnable:
            raise ConfigError(
                f"experiment {experiment_id} is {exp.status.value}; only a planned experiment "
                "can be tested (generate a new one with generate_experiments)."
            )
        if (baseline_function is None) == (baseline_value is None):
            raise ConfigError("pass exactly one of baseline_function and baseline_value.")
        if measure not in _MEASURES:
            raise ConfigError(f"measure must be one of {_MEASURES}, but got {measure!r}.")
        if not 3 <= repeats <= 100_000:
            raise ConfigError(f"repeats must be in [3, 100000], but got {repeats=}.")
        if warmup < 0:
            raise ConfigError(f"warmup must be >= 0, but got {warmup=}.")
        if test not in ("auto", "welch", "mann_whitney"):
            raise ConfigError(f"test must be 'auto', 'welch' or 'mann_whitney', not {test!r}.")
        if measure == "time":
            d = Direction.MINIMIZE
        elif direction is not None:
            d = as_direction(direction)
        elif exp.capability_id is not None:
            caps = {c.id: c for c in self.store.list_capabilities()}
            d = as_direction(caps[exp.capability_id].direction)
        else:
            raise ConfigError(
                "measure='value' needs a direction: pass direction='maximize' or 'minimize'."
            )
        if baseline_value is not None and not math.isfinite(baseline_value):
            raise ConfigError(f"baseline_value must be finite, but got {baseline_value!r}.")
        chosen = test if test != "auto" else ("mann_whitney" if measure == "time" else "welch")

        self.store.update_experiment(experiment_id, status=ExperimentStatus.RUNNING)
        t_start = time.perf_counter()
        base_samples: list[float] = []
        test_samples: list[float] = []
        side = "setup"

        def sample(fn: Callable[[], Any], which: str) -> float:
            nonlocal side
            side = which
            if measure == "time":
                t0 = time.perf_counter()
                fn()
                return time.perf_counter() - t0
            out = fn()
            if isinstance(out, bool) or not isinstance(out, (int, float, np.number)):
                raise TypeError(f"returned {type(out).__name__}, not a number (measure='value')")
            value = float(out)
            if not math.isfinite(value):
                raise ValueError(f"returned {value}, not a finite number")
            return value

        try:
            for _ in range(warmup):
                if baseline_function is not None:
                    sample(baseline_function, "baseline")
                sample(test_function, "approach")
            for i in range(repeats):
                if baseline_function is not None and i % 2 == 0:
                    base_samples.append(sample(baseline_function, "baseline"))
                test_samples.append(sample(test_function, "approach"))
                if baseline_function is not None and i % 2 == 1:
                    base_samples.append(sample(baseline_function, "baseline"))
        except Exception as exc:  # any failure of the code under test is a failed experiment
            error = f"{type(exc).__name__}: {exc}"
            reason = f"the {side} raised {error}"
            logger.warning("experiment %d failed: %s", experiment_id, reason)
            stats_fail = {
                "error": error,
                "error_type": type(exc).__name__,
                "failed_side": side,
                "completed_repeats": len(test_samples),
                "measure": measure,
                "threshold": self.improvement_threshold,
                "alpha": self.alpha,
                "success": False,
            }
            self.store.update_experiment(
                experiment_id,
                status=ExperimentStatus.FAILED,
                reason=reason,
                statistics=stats_fail,
                compute={"seconds": time.perf_counter() - t_start},
            )
            self._after_experiment(experiment_id)
            return ApproachResult(
                experiment_id=experiment_id,
                status=ExperimentStatus.FAILED.value,
                success=False,
                significant=False,
                relative_improvement=None,
                expected_improvement=exp.expected_improvement,
                exceeded_expectation=False,
                p_value=None,
                test=None,
                effect_size=None,
                ci=None,
                reason=reason,
                error=error,
                statistics=stats_fail,
            )

        baseline: Sequence[float] | float = (
            base_samples if baseline_function is not None else float(baseline_value or 0.0)
        )
        cmp = compare_samples(
            baseline,
            test_samples,
            d,
            test=chosen,
            seed=derive_seed("engine_experiment", self.seed, experiment_id),
        )
        rel = cmp.relative_improvement
        significant = cmp.p_value < self.alpha
        success = bool(math.isfinite(rel) and rel > self.improvement_threshold and significant)
        expected = exp.expected_improvement
        exceeded = bool(expected is not None and math.isfinite(rel) and rel >= expected)
        unit = "s" if measure == "time" else ""
        reason = (
            f"{cmp.statistic} {cmp.baseline_center:.4g}{unit} → {cmp.treatment_center:.4g}{unit}: "
            f"improvement {_pct(rel)} (threshold {self.improvement_threshold:.0%}), "
            f"{cmp.test} p={cmp.p_value:.3g} ({'<' if significant else '≥'} α={self.alpha})"
            f" → {'success' if success else 'no success'}"
        )
        statistics = {
            **cmp.to_dict(),
            "relative_improvement": rel,
            "p_value": cmp.p_value,
            "significant": significant,
            "success": success,
            "threshold": self.improvement_threshold,
            "alpha": self.alpha,
            "measure": measure,
            "direction": d.value,
            "expected_improvement": expected,
            "exceeded_expectation": exceeded,
            "samples": {
                "baseline": base_samples if baseline_function is not None else [baseline_value],
                "approach": test_samples,
            },
            "interleaved": baseline_function is not None,
        }
        wall = time.perf_counter() - t_start
        self.store.update_experiment(
            experiment_id,
            status=ExperimentStatus.COMPLETED,
            decision=Decision.PROMOTE if success else Decision.REJECT,
            reason=reason,
            statistics=statistics,
            compute={"seconds": wall},
            durations={"test_s": wall},
        )
        logger.info("experiment %d (%s): %s", experiment_id, exp.strategy, reason)
        self._after_experiment(experiment_id)
        return ApproachResult(
            experiment_id=experiment_id,
            status=ExperimentStatus.COMPLETED.value,
            success=success,
            significant=significant,
            relative_improvement=rel,
            expected_improvement=expected,
            exceeded_expectation=exceeded,
            p_value=cmp.p_value,
            test=cmp.test,
            effect_size=cmp.effect_size,
            ci=cmp.relative_ci,
            reason=reason,
            statistics=statistics,
        )

    def _after_experiment(self, experiment_id: int) -> None:
        """Feed a finished engine experiment to the bandit, the meta-learnings, the patterns."""
        exp = self.store.get_experiment(experiment_id)
        wtype = str(exp.params.get("weakness_type") or WeaknessType.CAPABILITY_GAP.value)
        success = exp.decision is Decision.PROMOTE
        rel = exp.statistics.get("relative_improvement")
        gain = float(rel) if isinstance(rel, (int, float)) and math.isfinite(rel) else 0.0
        bandit = self._bandit()
        bandit.update((wtype, BANDIT_FAMILY), exp.strategy, max(0.0, gain) if success else 0.0)
        self.store.save_state(BANDIT_STATE_KEY, bandit.to_dict())
        self._event(
            "engine_experiment",
            exp.reason,
            {"experiment_id": exp.id, "weakness_id": exp.weakness_id, "success": success},
            exp.model_id,
        )
        self._learn_from(exp, wtype)

    # ================================================================== measuring
    def measure_improvement(
        self,
        before_value: float,
        after_value: float,
        metric_name: str,
        context: dict[str, Any] | None = None,
        *,
        before_samples: Sequence[float] | None = None,
        after_samples: Sequence[float] | None = None,
        direction: Direction | str | None = None,
        experiment_id: int | None = None,
        improvement_id: int | None = None,
        test: str = "welch",
    ) -> ImprovementMeasurementRecord:
        """Measure a change of one metric and store it (a time series per metric name).

        Figures (seed 002): absolute ``after - before``, relative ``(after - before) /
        |before|``, percent; plus ``improvement``, the relative change signed so that positive
        is better. With samples, significance is a two-sided test, Welch's t-test or (for
        skewed samples such as timings) Mann-Whitney U, at ``alpha``; with none, the seed's
        rule ``|relative| >= improvement_threshold``, labelled ``threshold``.
        Confidence: ``high`` above 50 %, ``medium`` above 15 %, else ``low`` (and ``low`` when
        samples show the change is not significant).

        Args:
            before_value: The metric before.
            after_value: The metric after.
            metric_name: A capability name (its direction is used) or any name.
            context: Kept with the figures.
            before_samples: Repeated measurements before.
            after_samples: Repeated measurements after.
            direction: Which way is better (required unless the metric is a capability).
            experiment_id: The experiment it belongs to.
            improvement_id: The code improvement it belongs to.
            test: With samples: ``welch`` or ``mann_whitney``.

        Returns:
            The stored measurement.

        Raises:
            ConfigError: Non-finite values, a missing or contradicting direction, samples on
                one side only, an unknown test.
        """
        cap: CapabilityRecord | None = None
        try:
            cap = self.store.get_capability(metric_name)
        except NotFoundError:
            cap = None
        if cap is not None:
            d = as_direction(cap.direction)
            if direction is not None and as_direction(direction) is not d:
                raise ConfigError(
                    f"{metric_name!r} is a capability to {d.value}; drop direction= or use "
                    "another metric name."
                )
        elif direction is not None:
            d = as_direction(direction)
        else:
            raise ConfigError(
                f"metric {metric_name!r} is not a registered capability, so its direction is "
                "unknown: pass direction='minimize' or 'maximize'."
            )
        change = describe_change(float(before_value), float(after_value), d)
        if (before_samples is None) != (after_samples is None):
            raise ConfigError("pass both before_samples and after_samples, or neither.")
        p_value: float | None = None
        significant: bool
        if before_samples is not None and after_samples is not None:
            from scipy import stats

            b = np.asarray(before_samples, dtype=float)
            a = np.asarray(after_samples, dtype=float)
            if b.size < 2 or a.size < 2 or not (np.isfinite(b).all() and np.isfinite(a).all()):
                raise ConfigError(
                    "samples need at least 2 finite values on each side, but got "
                    f"{b.size} and {a.size}."
                )
            if test not in ("welch", "mann_whitney"):
                raise ConfigError(f"test must be 'welch' or 'mann_whitney', but got {test!r}.")
            if np.std(b) == 0 and np.std(a) == 0:
                used, p_value = "deterministic", 0.0 if b[0] != a[0] else 1.0
            elif test == "mann_whitney":
                used = "mann_whitney_u"
                p_value = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
            else:
                used = "welch_t"
                p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
            significant = p_value < self.alpha
            n_before, n_after = int(b.size), int(a.size)
        else:
            used = "threshold"
            significant = bool(
                math.isfinite(change.relative)
                and abs(change.relative) >= self.improvement_threshold
            )
            n_before = n_after = 1
        level = confidence_level(
            change.improvement, significant if before_samples is not None else None
        )
        record = self.store.add_improvement_measurement(
            metric_name=metric_name,
            capability_id=cap.id if cap else None,
            experiment_id=experiment_id,
            improvement_id=improvement_id,
            direction=d.value,
            before_value=float(before_value),
            after_value=float(after_value),
            absolute_change=change.absolute,
            relative_change=change.relative,
            percent_change=change.percent,
            improvement=change.improvement,
            significant=significant,
            p_value=p_value,
            test=used,
            confidence=level,
            n_before=n_before,
            n_after=n_after,
            context=context or {},
        )
        logger.info(
            "%s: %.6g → %.6g (%s, %s, confidence %s)",
            metric_name,
            before_value,
            after_value,
            _pct(change.improvement),
            "significant" if significant else "not significant",
            level,
        )
        return record

    # ================================================================== history
    def track_improvement_history(
        self,
        version: str,
        summary: str,
        improvements: Sequence[Any] | None = None,
        delta: float | None = None,
        changes: Sequence[Any] | None = None,
    ) -> HistoryRecord:
        """Add a version to the changelog.

        Args:
            version: The version's name (``"1.4.0"``).
            summary: What changed, in a sentence.
            improvements: Ids or descriptions of the improvements it contains.
            delta: The measured overall performance change (``None``: not measured).
            changes: Notable changes, one entry each.

        Raises:
            ConfigError: Empty version, or a non-finite delta.
        """
        if not version:
            raise ConfigError("a history entry needs a version, e.g. '1.4.0'.")
        if delta is not None and not math.isfinite(delta):
            raise ConfigError(f"delta must be a finite number or None, but got {delta!r}.")
        return self.store.add_history_entry(
            str(version),
            summary,
            improvements=list(improvements or []),
            performance_delta=delta,
            changes=list(changes or []),
        )

    def get_improvement_history(self, limit: int = 10) -> list[HistoryRecord]:
        """The newest ``limit`` changelog entries, newest first."""
        if limit < 1:
            raise ConfigError(f"limit must be >= 1, but got {limit=}.")
        return self.store.list_history_entries(limit)

    # ================================================================== assessment
    def _calculate_overall_learning_quality(self) -> LearningQuality:
        """Seed 002's score from the ledger (see :func:`learning_quality`)."""
        finished = [e for e in self.store.list_experiments() if e.status in FINISHED]
        with_exp = [e for e in finished if e.expected_improvement is not None]
        exceeded = sum(
            1
            for e in with_exp
            if e.status is ExperimentStatus.COMPLETED
            and self._outcome(e)[1] >= float(e.expected_improvement or 0.0)
        )
        weaknesses = self.store.list_weaknesses()
        resolved = sum(w.status is WeaknessStatus.RESOLVED for w in weaknesses)
        return learning_quality(exceeded, len(with_exp), resolved, len(weaknesses))

    def get_self_assessment(self) -> SelfAssessment:
        """Seed 002's self-assessment, counted from the ledger.

        Learning quality = 0.6 × share of finished experiments (with an expectation) whose
        measured improvement reached it + 0.4 × share of weaknesses resolved; grade A > 0.8,
        B > 0.6, C > 0.4, else D. With the capabilities, weaknesses by severity, experiment
        success rate, applied improvements (code changes and model promotions), meta-learning
        count, and the trend of the success rate.
        """
        self._auto_identify_weaknesses()
        quality = self._calculate_overall_learning_quality()
        profiles = self.profile_all_capabilities()
        measured = [p for p in profiles if p.current is not None]
        improvements = [p.improvement for p in measured if p.improvement is not None]
        weaknesses = self.store.list_weaknesses()
        open_by_severity: dict[str, int] = {s.value: 0 for s in Severity}
        by_status: dict[str, int] = {s.value: 0 for s in WeaknessStatus}
        for w in weaknesses:
            by_status[w.status.value] += 1
            if w.status.is_active():
                open_by_severity[w.severity] = open_by_severity.get(w.severity, 0) + 1
        experiments = self.store.list_experiments()
        exp_status: dict[str, int] = defaultdict(int)
        for e in experiments:
            exp_status[e.status.value] += 1
        finished = sorted(  # in the order they finished: the trend reads them in time
            (e for e in experiments if e.status in FINISHED),
            key=lambda e: (e.finished_at or e.created_at, e.id),
        )
        successes = [e.decision is Decision.PROMOTE for e in finished]
        engine_finished = [e for e in finished if e.weakness_id is not None]
        code = self.store.list_code_improvements()
        code_applied = sum(c.status is CodeImprovementStatus.APPLIED for c in code)
        promotions = sum(
            1 for e in finished if e.weakness_id is None and e.decision is Decision.PROMOTE
        )
        metas = self.store.list_meta_learnings()
        meta_kinds: dict[str, int] = defaultdict(int)
        for m in metas:
            meta_kinds[m.kind] += 1
        latest = self.store.list_history_entries(1)
        return SelfAssessment(
            learning_quality_score=quality.score,
            grade=quality.grade,
            components=quality.to_dict(),
            capabilities={
                "total": len(profiles),
                "measured": len(measured),
                "at_target": sum(p.at_target for p in profiles),
                "below_target": sum(p.level in {s.value for s in Severity} for p in profiles),
                "mean_improvement": (float(np.mean(improvements)) if improvements else None),
            },
            weaknesses={
                "total": len(weaknesses),
                "by_status": by_status,
                "open_by_severity": open_by_severity,
            },
            experiments={
                "total": len(experiments),
                "by_status": dict(exp_status),
                "finished": len(finished),
                "successes": sum(successes),
                "success_rate": sum(successes) / len(finished) if finished else None,
                "engine_finished": len(engine_finished),
                "engine_successes": sum(e.decision is Decision.PROMOTE for e in engine_finished),
            },
            improvements={
                "code_applied": code_applied,
                "code_pending": sum(c.status is CodeImprovementStatus.PENDING for c in code),
                "code_rolled_back": sum(
                    c.status is CodeImprovementStatus.ROLLED_BACK for c in code
                ),
                "model_promotions": promotions,
                "applied_total": code_applied + promotions,
            },
            meta_learnings={"count": len(metas), "by_kind": dict(meta_kinds)},
            trend={
                **success_trend(successes),
                "latest_version": latest[0].version if latest else None,
            },
            generated_at=utcnow(),
        )
