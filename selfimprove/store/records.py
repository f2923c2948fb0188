"""Frozen records returned by the store, and the state enums they carry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from selfimprove._enums import ValueEnum

__all__ = [
    "AuditRecord",
    "CapabilityRecord",
    "CodeImprovementRecord",
    "CodeImprovementStatus",
    "Decision",
    "EventRecord",
    "ExperimentRecord",
    "ExperimentStatus",
    "HistoryRecord",
    "ImprovementMeasurementRecord",
    "MeasurementRecord",
    "MeasurementSet",
    "MetaLearningRecord",
    "ModelRecord",
    "VersionRecord",
    "VersionStatus",
    "WeaknessRecord",
    "WeaknessStatus",
]


class VersionStatus(ValueEnum):
    """Where a version stands. Exactly one version of a model is ``INCUMBENT``."""

    CANDIDATE = "candidate"  # saved, waiting for the judge
    INCUMBENT = "incumbent"  # the version in use
    BACKUP = "backup"  # a replaced incumbent, kept for rollback
    REJECTED = "rejected"  # judged and not promoted
    ROLLED_BACK = "rolled_back"  # an incumbent that a rollback replaced
    PRUNED = "pruned"  # weights deleted by the retention policy; the record stays

    def has_weights(self) -> bool:
        """Whether the checkpoint file is kept on disk in this state."""
        return self is not VersionStatus.PRUNED


class ExperimentStatus(ValueEnum):
    """Lifecycle of an experiment."""

    PLANNED = "planned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STALE = "stale"  # cut short by a crash; found at the next start

    def is_finished(self) -> bool:
        """Whether the experiment will not change any more."""
        return self in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED, ExperimentStatus.STALE)


class WeaknessStatus(ValueEnum):
    """Lifecycle of a weakness: open → in progress → resolved / won't fix."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    WONT_FIX = "wont_fix"

    def is_active(self) -> bool:
        """Whether the weakness still calls for work."""
        return self in (WeaknessStatus.OPEN, WeaknessStatus.IN_PROGRESS)

    def can_become(self, other: WeaknessStatus) -> bool:
        """Whether the lifecycle allows moving from this status to ``other``."""
        allowed = {
            WeaknessStatus.OPEN: {
                WeaknessStatus.IN_PROGRESS,
                WeaknessStatus.RESOLVED,
                WeaknessStatus.WONT_FIX,
            },
            WeaknessStatus.IN_PROGRESS: {WeaknessStatus.RESOLVED, WeaknessStatus.WONT_FIX},
        }
        return other in allowed.get(self, set())


class CodeImprovementStatus(ValueEnum):
    """Lifecycle of a code improvement: pending → applied → rolled back, or rejected."""

    PENDING = "pending"  # proposed, waiting for approval; the file is untouched
    APPLIED = "applied"  # the new function is in the file
    REJECTED = "rejected"  # refused by a person or by the check command; file as before
    ROLLED_BACK = "rolled_back"  # applied, then the exact previous bytes were restored


class Decision(ValueEnum):
    """What the judge decided about a candidate."""

    PROMOTE = "promote"
    REJECT = "reject"


@dataclass(frozen=True)
class ModelRecord:
    id: int
    name: str
    task: str
    family: str
    description: str
    incumbent_version_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class CapabilityRecord:
    id: int
    name: str
    type: str
    description: str
    direction: str
    baseline: float | None
    target: float | None
    unit: str
    model_id: int | None
    objective: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionRecord:
    id: int
    model_id: int
    number: int
    parent_id: int | None
    status: VersionStatus
    strategy: str
    origin: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    checkpoint_path: str | None
    manifest_path: str
    sha256: str
    size_bytes: int
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True)
class MeasurementSet:
    """Values of one capability measured at one time, one per split, to be recorded (see
    :meth:`selfimprove.store.Store.add_measurement_sets`)."""

    capability_id: int
    values: Mapping[str, float]
    version_id: int | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    measured_at: datetime | None = None


@dataclass(frozen=True)
class MeasurementRecord:
    id: int
    capability_id: int
    version_id: int | None
    split: str
    value: float
    context: dict[str, Any]
    measured_at: datetime


@dataclass(frozen=True)
class ExperimentRecord:
    id: int
    model_id: int | None
    capability_id: int | None
    strategy: str
    objective: str | None
    params: dict[str, Any]
    hypothesis: str
    cycle: int | None
    seed: int | None
    status: ExperimentStatus
    decision: Decision | None
    reason: str
    statistics: dict[str, Any]
    incumbent_version_id: int | None
    candidate_version_id: int | None
    compute: dict[str, Any]
    durations: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    weakness_id: int | None = None
    expected_improvement: float | None = None
    owner: str | None = None  # ``host:pid:start_ms`` of the process that runs it
    heartbeat_at: datetime | None = None


@dataclass(frozen=True)
class EventRecord:
    id: int
    kind: str
    model_id: int | None
    message: str
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True)
class MetaLearningRecord:
    id: int
    kind: str
    subject: str
    statement: str
    count: int
    successes: int
    confidence: float
    evidence: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    times_validated: int = 0


@dataclass(frozen=True)
class WeaknessRecord:
    id: int
    name: str
    type: str
    severity: str
    impact: float
    priority: float
    description: str
    capability_id: int | None
    gap: float | None
    status: WeaknessStatus
    source: str
    evidence: dict[str, Any]
    resolution: str
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class CodeImprovementRecord:
    id: int
    name: str
    file_path: str
    root: str
    function_name: str
    experiment_id: int | None
    status: CodeImprovementStatus
    reason: str
    new_code: str
    original_content: bytes
    patched_content: bytes
    sha256_before: str
    sha256_after: str
    md5_before: str
    md5_after: str
    check_command: list[Any]
    check_before: dict[str, Any]
    check_after: dict[str, Any]
    performance: dict[str, Any]
    requested_by: str
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None
    applied_at: datetime | None
    rolled_back_at: datetime | None


@dataclass(frozen=True)
class AuditRecord:
    id: int
    action: str
    actor: str
    improvement_id: int | None
    file_path: str
    sha256_before: str | None
    sha256_after: str | None
    details: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class HistoryRecord:
    id: int
    version: str
    summary: str
    improvements: list[Any]
    performance_delta: float | None
    changes: list[Any]
    created_at: datetime


@dataclass(frozen=True)
class ImprovementMeasurementRecord:
    id: int
    metric_name: str
    capability_id: int | None
    experiment_id: int | None
    improvement_id: int | None
    direction: str
    before_value: float | None
    after_value: float | None
    absolute_change: float | None
    relative_change: float | None
    percent_change: float | None
    improvement: float | None
    significant: bool
    p_value: float | None
    test: str
    confidence: str
    n_before: int
    n_after: int
    context: dict[str, Any]
    measured_at: datetime
