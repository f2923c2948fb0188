"""Frozen records returned by the store, and the state enums they carry."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "CapabilityRecord",
    "Decision",
    "EventRecord",
    "ExperimentRecord",
    "ExperimentStatus",
    "MeasurementRecord",
    "MetaLearningRecord",
    "ModelRecord",
    "VersionRecord",
    "VersionStatus",
]


class VersionStatus(str, enum.Enum):
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


class ExperimentStatus(str, enum.Enum):
    """Lifecycle of an experiment."""

    PLANNED = "planned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STALE = "stale"  # cut short by a crash; found at the next start

    def is_finished(self) -> bool:
        """Whether the experiment will not change any more."""
        return self in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED, ExperimentStatus.STALE)


class Decision(str, enum.Enum):
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
