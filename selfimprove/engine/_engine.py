"""`SelfImprovementEngine`: seed 002's ledger of capabilities, weaknesses and experiments.

It is not a second system beside the neural one: it reads and writes the same store (give it
the process's :class:`~selfimprove.store.Store` with ``store=``). A model objective registered
by the neural system is a capability here (named ``<model>/<objective>``), a strategy run is an
experiment, a promotion is an applied improvement, and what is learnt about learning goes to
the one ``meta_learnings`` table. What the engine adds is the rest of seed 002: weaknesses with
a lifecycle, experiments designed from templates and tested with statistics, measured
improvements, code improvements under approval with an audit trail, a changelog, and a
self-assessment.

Everything is direction-aware (through :class:`~selfimprove.objectives.Objective`): a latency
of 10 s against a 2 s target is a gap of 400 %, i.e. critical, never "at target".

The engine is a facade over small parts, each given the one store:

- :class:`~selfimprove.engine._capabilities.Capabilities`: register, measure, profile;
- :class:`~selfimprove.engine._weakness_book.Weaknesses`: open, update, resolve, by hand;
- :class:`~selfimprove.engine._experiments.Experiments`: design, test, measure;
- :class:`~selfimprove.engine._code.CodeImprovements`: propose, approve, check, roll back, audit;
- :class:`~selfimprove.engine._learning.Learning`: meta-learnings, patterns, changelog;
- :class:`~selfimprove.engine._self_assessment.SelfAssessor`: the grade and the counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from selfimprove.engine._actors import Actor
from selfimprove.engine._approval import ApprovalPlan
from selfimprove.engine._capabilities import Capabilities
from selfimprove.engine._code import CheckSettings, CodeImprovements
from selfimprove.engine._experiments import BANDIT_STATE_KEY, Experiments
from selfimprove.engine._learning import Learning
from selfimprove.engine._self_assessment import SelfAssessor
from selfimprove.engine._types import (
    ApproachResult,
    CapabilityProfile,
    MetaLearningType,
    SelfAssessment,
    Severity,
    WeaknessType,
)
from selfimprove.engine._weakness_book import Weaknesses
from selfimprove.engine.codepatch import parse_command, resolve_root
from selfimprove.errors import ConfigError
from selfimprove.measure.stats import as_direction
from selfimprove.meta.patterns import PatternLearner
from selfimprove.objectives import Direction
from selfimprove.store import (
    AuditRecord,
    CapabilityRecord,
    CodeImprovementRecord,
    CodeImprovementStatus,
    ExperimentRecord,
    HistoryRecord,
    ImprovementMeasurementRecord,
    MetaLearningRecord,
    Store,
    WeaknessRecord,
    WeaknessStatus,
)

__all__ = ["BANDIT_STATE_KEY", "SelfImprovementEngine"]

logger = logging.getLogger(__name__)


def _db_url(db_path: str | os.PathLike[str] | None) -> str | None:
    if db_path is None:
        return None
    text = os.fspath(db_path)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


class SelfImprovementEngine:
    """Seed 002's self-improvement engine, on the product's one store.

    Args:
        db_path: A SQLite file path or a SQLAlchemy URL. Default: the home folder's store
            (``$SELFIMPROVE_DB``, else ``<home>/selfimprove.db``), the one the neural system
            writes, so its capabilities appear here. Ignored when ``store`` is given.
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
        store: The process's store: the engine uses that very object (no second connection
            pool) and leaves it open in :meth:`close`. Not given: the engine opens one from
            ``db_path`` / ``home`` and closes it.

    Attributes:
        improvement_threshold: Relative improvement an experiment must exceed (0.15).
        alpha: Significance level of every test (0.05).

    Raises:
        ConfigError: Bad settings (malformed URL, empty check command, bad numbers).
        SchemaVersionError: The store was written by a newer selfimprove.
    """

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
        store: Store | None = None,
    ) -> None:
        if check_timeout_s <= 0:
            raise ConfigError(f"check_timeout_s must be > 0, but got {check_timeout_s=}.")
        if check_repeats < 1:
            raise ConfigError(f"check_repeats must be >= 1, but got {check_repeats=}.")
        check = CheckSettings(
            root=resolve_root(root if root is not None else os.getcwd()),
            command=parse_command(check_command),
            timeout_s=float(check_timeout_s),
            repeats=int(check_repeats),
            direction=as_direction(check_direction),
        )
        self._owns_store = store is None
        self.store = store if store is not None else Store(_db_url(db_path), home=home)
        self._actor = Actor(actor)
        self.learning = Learning(self.store, PatternLearner())
        self.weaknesses = Weaknesses(self.store, self._actor)
        self.capabilities = Capabilities(self.store, self.weaknesses)
        self.experiments = Experiments(self.store, self.learning, seed=seed)
        self.code = CodeImprovements(
            self.store,
            check,
            self._actor,
            self.experiments.measure_improvement,
            auto_improve=bool(auto_improve),
        )
        self.assessor = SelfAssessor(self.store, self.capabilities, self.weaknesses)

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        """Release the store's connections, when the engine opened the store itself."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> SelfImprovementEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ settings
    @property
    def improvement_threshold(self) -> float:
        """Relative improvement an experiment must exceed (0.15)."""
        return self.experiments.improvement_threshold

    @improvement_threshold.setter
    def improvement_threshold(self, value: float) -> None:
        self.experiments.improvement_threshold = value

    @property
    def alpha(self) -> float:
        """Significance level of every test (0.05)."""
        return self.experiments.alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self.experiments.alpha = value

    @property
    def seed(self) -> int:
        """Seeds the bandit's draws and bootstrap intervals."""
        return self.experiments.seed

    @property
    def actor(self) -> str | None:
        """Who acts when a call names nobody (``None``: the operating-system user)."""
        return self._actor.name

    @actor.setter
    def actor(self, value: str | None) -> None:
        self._actor.name = value

    @property
    def auto_improve(self) -> bool:
        """Whether proposals are applied at once."""
        return self.code.auto_improve

    @auto_improve.setter
    def auto_improve(self, value: bool) -> None:
        self.code.auto_improve = bool(value)

    @property
    def root(self) -> Path:
        """The only folder code improvements may change."""
        return self.code.check.root

    @root.setter
    def root(self, value: Path) -> None:
        self.code.check.root = value

    @property
    def check_command(self) -> list[str]:
        """The check's argv (empty: no check)."""
        return self.code.check.command

    @property
    def check_timeout_s(self) -> float:
        """Seconds before the check is killed and counts as failed."""
        return self.code.check.timeout_s

    @check_timeout_s.setter
    def check_timeout_s(self, value: float) -> None:
        self.code.check.timeout_s = value

    @property
    def check_repeats(self) -> int:
        """Runs of the check before and after."""
        return self.code.check.repeats

    @property
    def check_direction(self) -> Direction:
        """Whether the check's number is better lower or higher."""
        return self.code.check.direction

    @property
    def pattern_learner(self) -> PatternLearner:
        """The pattern learner over experiment sequences."""
        return self.learning.pattern_learner

    # ------------------------------------------------------------------ capabilities
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
        """Register a capability (see :meth:`Capabilities.register_capability`)."""
        return self.capabilities.register_capability(
            name, type, description, baseline, target, unit, direction
        )

    def measure_capability(
        self, name: str, value: float, context: dict[str, Any] | None = None
    ) -> CapabilityProfile:
        """Record one measurement (see :meth:`Capabilities.measure_capability`)."""
        return self.capabilities.measure_capability(name, value, context)

    def get_capability_profile(self, name: str) -> CapabilityProfile:
        """Where one capability stands (see :meth:`Capabilities.get_capability_profile`)."""
        return self.capabilities.get_capability_profile(name)

    def profile_all_capabilities(self) -> list[CapabilityProfile]:
        """Every capability's profile (see :meth:`Capabilities.profile_all_capabilities`)."""
        return self.capabilities.profile_all_capabilities()

    # ------------------------------------------------------------------ weaknesses
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
        """Register a weakness by hand (see :meth:`Weaknesses.identify_weakness`)."""
        return self.weaknesses.identify_weakness(
            name,
            type,
            severity,
            description,
            impact,
            capability=capability,
            evidence=evidence,
        )

    def analyze_weaknesses(
        self, min_impact: float = 0.0, *, include_closed: bool = False
    ) -> list[WeaknessRecord]:
        """The weaknesses to work on, most urgent first (see
        :meth:`Weaknesses.analyze_weaknesses`)."""
        return self.weaknesses.analyze_weaknesses(min_impact, include_closed=include_closed)

    def set_weakness_status(
        self, weakness_id: int, status: WeaknessStatus | str, note: str = ""
    ) -> WeaknessRecord:
        """Move a weakness along its lifecycle (see :meth:`Weaknesses.set_weakness_status`)."""
        return self.weaknesses.set_weakness_status(weakness_id, status, note)

    # ------------------------------------------------------------------ experiments
    def generate_experiments(
        self, weakness_id: int, num_experiments: int = 3
    ) -> list[ExperimentRecord]:
        """Design experiments for a weakness (see :meth:`Experiments.generate_experiments`)."""
        return self.experiments.generate_experiments(weakness_id, num_experiments)

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
        """Run an experiment and judge it (see :meth:`Experiments.test_approach`)."""
        return self.experiments.test_approach(
            experiment_id,
            test_function,
            baseline_function,
            baseline_value,
            repeats,
            measure=measure,
            direction=direction,
            test=test,
            warmup=warmup,
        )

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
        """Measure a change of one metric (see :meth:`Experiments.measure_improvement`)."""
        return self.experiments.measure_improvement(
            before_value,
            after_value,
            metric_name,
            context,
            before_samples=before_samples,
            after_samples=after_samples,
            direction=direction,
            experiment_id=experiment_id,
            improvement_id=improvement_id,
            test=test,
        )

    # ------------------------------------------------------------------ code improvements
    def apply_improvement(
        self,
        name: str,
        file_path: str | os.PathLike[str],
        function_name: str,
        new_code: str,
        experiment_id: int | None = None,
        *,
        actor: str | None = None,
    ) -> CodeImprovementRecord:
        """Propose a code change (see :meth:`CodeImprovements.apply_improvement`)."""
        return self.code.apply_improvement(
            name, file_path, function_name, new_code, experiment_id, actor=actor
        )

    def plan_approval(
        self, improvement_id: int, expected_digest: str | None = None
    ) -> ApprovalPlan:
        """What approving will run and write (see :meth:`CodeImprovements.plan_approval`)."""
        return self.code.plan_approval(improvement_id, expected_digest)

    def approve_improvement(
        self,
        improvement_id: int,
        actor: str | None = None,
        *,
        expected_digest: str | None = None,
    ) -> CodeImprovementRecord:
        """Approve a pending change (see :meth:`CodeImprovements.approve_improvement`)."""
        return self.code.approve_improvement(improvement_id, actor, expected_digest=expected_digest)

    def reject_improvement(
        self, improvement_id: int, reason: str = "", actor: str | None = None
    ) -> CodeImprovementRecord:
        """Reject a pending change (see :meth:`CodeImprovements.reject_improvement`)."""
        return self.code.reject_improvement(improvement_id, reason, actor)

    def rollback_improvement(
        self, improvement_id: int, actor: str | None = None, reason: str = ""
    ) -> CodeImprovementRecord:
        """Restore a file's bytes (see :meth:`CodeImprovements.rollback_improvement`)."""
        return self.code.rollback_improvement(improvement_id, actor, reason)

    def list_improvements(
        self, status: CodeImprovementStatus | str | None = None
    ) -> list[CodeImprovementRecord]:
        """Code improvements, oldest first (of one status if given)."""
        return self.code.list_improvements(status)

    def get_audit_trail(self, improvement_id: int | None = None) -> list[AuditRecord]:
        """Every recorded action (on one improvement if given), oldest first."""
        return self.code.get_audit_trail(improvement_id)

    # ------------------------------------------------------------------ learning
    def expected_improvement(self, weakness_type: str, approach: str) -> tuple[float, int] | None:
        """The mean measured improvement of ``approach`` on ``weakness_type`` and its count."""
        return self.learning.expected_improvement(weakness_type, approach)

    def learn_patterns(self) -> list[MetaLearningRecord]:
        """Store what recurs in experiment sequences (see :meth:`Learning.learn_patterns`)."""
        return self.learning.learn_patterns()

    def record_meta_learning(
        self,
        type: MetaLearningType | str,
        pattern: str,
        insight: str,
        confidence: float,
        experiments: Sequence[int] | None = None,
    ) -> MetaLearningRecord:
        """Record an observation about improving (see :meth:`Learning.record_meta_learning`)."""
        return self.learning.record_meta_learning(type, pattern, insight, confidence, experiments)

    def get_meta_learnings(
        self, min_confidence: float = 0.0, type: MetaLearningType | str | None = None
    ) -> list[MetaLearningRecord]:
        """Meta-learnings, most confident first (see :meth:`Learning.get_meta_learnings`)."""
        return self.learning.get_meta_learnings(min_confidence, type)

    def track_improvement_history(
        self,
        version: str,
        summary: str,
        improvements: Sequence[Any] | None = None,
        delta: float | None = None,
        changes: Sequence[Any] | None = None,
    ) -> HistoryRecord:
        """Add a version to the changelog (see :meth:`Learning.track_improvement_history`)."""
        return self.learning.track_improvement_history(
            version, summary, improvements, delta, changes
        )

    def get_improvement_history(self, limit: int = 10) -> list[HistoryRecord]:
        """The newest ``limit`` changelog entries, newest first."""
        return self.learning.get_improvement_history(limit)

    # ------------------------------------------------------------------ assessment
    def get_self_assessment(self) -> SelfAssessment:
        """Seed 002's self-assessment (see :meth:`SelfAssessor.get_self_assessment`)."""
        return self.assessor.get_self_assessment()
