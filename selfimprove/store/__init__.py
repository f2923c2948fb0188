"""The store: SQLAlchemy 2 schema, the `Store`, and the frozen records it returns."""

from __future__ import annotations

from selfimprove.store._schema import SCHEMA_VERSION
from selfimprove.store._store import Store, clean_json, utcnow
from selfimprove.store.records import (
    AuditRecord,
    CapabilityRecord,
    CodeImprovementRecord,
    CodeImprovementStatus,
    Decision,
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    HistoryRecord,
    ImprovementMeasurementRecord,
    MeasurementRecord,
    MeasurementSet,
    MetaLearningRecord,
    ModelRecord,
    VersionRecord,
    VersionStatus,
    WeaknessRecord,
    WeaknessStatus,
)

__all__ = [
    "SCHEMA_VERSION",
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
    "Store",
    "VersionRecord",
    "VersionStatus",
    "WeaknessRecord",
    "WeaknessStatus",
    "clean_json",
    "utcnow",
]
