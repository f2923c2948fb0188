"""The SQLAlchemy 2 schema: the one ledger shared by all three systems.

Seed 002's vocabulary maps onto these tables: a model objective is a **capability**, a
strategy run is an **experiment**, a promotion is an applied improvement (an experiment whose
decision is ``promote``). The engine (schema 4) adds its tables beside these through the same
``Base``: weaknesses, code improvements with their audit trail, the version changelog and
measured before/after comparisons; ``SCHEMA_VERSION`` rises with each change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# 2: state, cycle_metrics; 3: meta_learnings; 4: the engine's weaknesses, code_improvements,
# audit_trail, improvement_history, improvement_measurements, and the columns
# experiments.weakness_id, experiments.expected_improvement, meta_learnings.times_validated;
# 5: models.last_version, experiments.owner and heartbeat_at, experiments.seed and
# versions.size_bytes as BIGINT.
# Each version is one Alembic revision in ``migrations/versions``: a change here needs one.
SCHEMA_VERSION = 6


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    task: Mapped[str] = mapped_column(String(256))
    family: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    # Plain integer, not a foreign key: models and versions point at each other.
    incumbent_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Schema 5: the highest version number handed out, raised by one atomic UPDATE per new
    # version, so that two processes never write the same ``v<N>`` (see reserve_version_number).
    last_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CapabilityRow(Base):
    __tablename__ = "capabilities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    direction: Mapped[str] = mapped_column(String(16))
    baseline: Mapped[float | None] = mapped_column(Float, nullable=True)
    target: Mapped[float | None] = mapped_column(Float, nullable=True)
    unit: Mapped[str] = mapped_column(String(32), default="")
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    objective: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class VersionRow(Base):
    __tablename__ = "versions"
    __table_args__ = (Index("ix_versions_model_number", "model_id", "number", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    number: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    checkpoint_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    manifest_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    # BIGINT (schema 5): a checkpoint of 2 GiB or more overflows PostgreSQL's 32-bit INTEGER.
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class MeasurementRow(Base):
    __tablename__ = "measurements"
    __table_args__ = (
        Index("ix_measurements_capability_time", "capability_id", "measured_at"),
        # The newest value of a capability in one split (read for every capability each cycle)
        # without scanning that capability's whole history.
        Index("ix_measurements_capability_split_id", "capability_id", "split", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capability_id: Mapped[int] = mapped_column(ForeignKey("capabilities.id"))
    version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    split: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(DateTime)


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        Index("ix_experiments_model", "model_id"),
        # Schema 6: the newest cycle and the running experiments, read every cycle.
        Index("ix_experiments_cycle", "cycle"),
        Index("ix_experiments_status", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    capability_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    strategy: Mapped[str] = mapped_column(String(64))
    objective: Mapped[str | None] = mapped_column(String(64), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    hypothesis: Mapped[str] = mapped_column(Text, default="")
    cycle: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # 63-bit (schema 5)
    status: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    statistics: Mapped[dict[str, Any]] = mapped_column(JSON)
    incumbent_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    candidate_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    compute: Mapped[dict[str, Any]] = mapped_column(JSON)
    durations: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Schema 4 (the engine): the weakness an experiment addresses and the relative improvement
    # expected of it before it ran (``None`` when nothing was expected, e.g. neural runs).
    weakness_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expected_improvement: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Schema 5: who runs a ``running`` experiment (``host:pid:process start``) and when it last
    # said it was alive; only a dead owner or an expired heartbeat makes it stale.
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class StateRow(Base):
    """Named JSON state of long-lived components (hormones, triggers, bandit)."""

    __tablename__ = "state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class CycleMetricsRow(Base):
    """Seed 000's ``SelfImprovementMetrics``, one row per improvement cycle."""

    __tablename__ = "cycle_metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    iteration: Mapped[int] = mapped_column(Integer, index=True)
    models_improved: Mapped[int] = mapped_column(Integer)
    total_improvement: Mapped[float] = mapped_column(Float)
    best_performance_gain: Mapped[float] = mapped_column(Float)
    average_training_time: Mapped[float] = mapped_column(Float)
    hormone_levels: Mapped[dict[str, Any]] = mapped_column(JSON)
    genetic_activations: Mapped[int] = mapped_column(Integer)
    memory_usage: Mapped[float] = mapped_column(Float)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON)
    timestamp: Mapped[datetime] = mapped_column(DateTime)


class MetaLearningRow(Base):
    """What the system has learnt about its own learning (seed 002's meta-learnings).

    One row per (kind, subject): e.g. kind ``strategy_effect``, subject ``prune|optimisation|
    image_classification``; the statement is readable, the counts and confidence are measured.
    """

    __tablename__ = "meta_learnings"
    __table_args__ = (Index("ix_meta_learnings_kind_subject", "kind", "subject", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256))
    statement: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer)
    successes: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # Schema 4: how many later observations agreed with the statement.
    times_validated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class WeaknessRow(Base):
    """A shortfall (seed 002's identified weakness): found from a capability's gap or by hand."""

    __tablename__ = "weaknesses"
    __table_args__ = (
        Index("ix_weaknesses_status", "status"),
        Index("ix_weaknesses_capability", "capability_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    impact: Mapped[float] = mapped_column(Float)
    priority: Mapped[float] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text, default="")
    capability_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gap: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # "auto" or "manual"
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolution: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class CodeImprovementRow(Base):
    """One function replaced in a source file, with the exact bytes before and after."""

    __tablename__ = "code_improvements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    file_path: Mapped[str] = mapped_column(Text)
    root: Mapped[str] = mapped_column(Text)
    function_name: Mapped[str] = mapped_column(String(256))
    experiment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    new_code: Mapped[str] = mapped_column(Text)
    original_content: Mapped[bytes] = mapped_column(LargeBinary)
    patched_content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256_before: Mapped[str] = mapped_column(String(64))
    sha256_after: Mapped[str] = mapped_column(String(64))
    md5_before: Mapped[str] = mapped_column(String(32))
    md5_after: Mapped[str] = mapped_column(String(32))
    check_command: Mapped[list[Any]] = mapped_column(JSON)  # argv; [] when none
    check_before: Mapped[dict[str, Any]] = mapped_column(JSON)
    check_after: Mapped[dict[str, Any]] = mapped_column(JSON)
    performance: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(128))
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    rolled_back_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class AuditRow(Base):
    """Who did what to which file, when, with the file's hashes before and after."""

    __tablename__ = "audit_trail"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    improvement_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    file_path: Mapped[str] = mapped_column(Text, default="")
    sha256_before: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sha256_after: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ImprovementHistoryRow(Base):
    """Seed 002's version changelog: one row per tracked version."""

    __tablename__ = "improvement_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    improvements: Mapped[list[Any]] = mapped_column(JSON)
    performance_delta: Mapped[float | None] = mapped_column(Float, nullable=True)
    changes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ImprovementMeasurementRow(Base):
    """A measured before/after comparison of one metric (a time series per metric name)."""

    __tablename__ = "improvement_measurements"
    __table_args__ = (Index("ix_improvement_measurements_metric", "metric_name", "measured_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    metric_name: Mapped[str] = mapped_column(String(256))
    capability_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    experiment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    improvement_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    direction: Mapped[str] = mapped_column(String(16))
    before_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    after_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    absolute_change: Mapped[float | None] = mapped_column(Float, nullable=True)
    relative_change: Mapped[float | None] = mapped_column(Float, nullable=True)
    percent_change: Mapped[float | None] = mapped_column(Float, nullable=True)
    improvement: Mapped[float | None] = mapped_column(Float, nullable=True)
    significant: Mapped[bool] = mapped_column(Boolean)
    p_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    test: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[str] = mapped_column(String(16))
    n_before: Mapped[int] = mapped_column(Integer)
    n_after: Mapped[int] = mapped_column(Integer)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(DateTime)
