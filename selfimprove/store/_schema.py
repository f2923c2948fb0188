"""The SQLAlchemy 2 schema: the one ledger shared by all three systems.

Seed 002's vocabulary maps onto these tables: a model objective is a **capability**, a
strategy run is an **experiment**, a promotion is an applied improvement (an experiment whose
decision is ``promote``). Later parts add tables beside these (weaknesses, meta-learnings,
code improvements) through the same ``Base``; ``SCHEMA_VERSION`` rises with each change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 3  # 2: state, cycle_metrics; 3: meta_learnings


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
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class MeasurementRow(Base):
    __tablename__ = "measurements"
    __table_args__ = (Index("ix_measurements_capability_time", "capability_id", "measured_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    capability_id: Mapped[int] = mapped_column(ForeignKey("capabilities.id"))
    version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    split: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(DateTime)


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = (Index("ix_experiments_model", "model_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    capability_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    strategy: Mapped[str] = mapped_column(String(64))
    objective: Mapped[str | None] = mapped_column(String(64), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    hypothesis: Mapped[str] = mapped_column(Text, default="")
    cycle: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
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
