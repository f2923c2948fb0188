"""The store: SQLAlchemy 2 schema, the `Store`, and the frozen records it returns."""

from __future__ import annotations

from selfimprove.store._schema import SCHEMA_VERSION
from selfimprove.store._store import Store, clean_json, utcnow
from selfimprove.store.records import (
    CapabilityRecord,
    Decision,
    EventRecord,
    ExperimentRecord,
    ExperimentStatus,
    MeasurementRecord,
    MetaLearningRecord,
    ModelRecord,
    VersionRecord,
    VersionStatus,
)

__all__ = [
    "SCHEMA_VERSION",
    "CapabilityRecord",
    "Decision",
    "EventRecord",
    "ExperimentRecord",
    "ExperimentStatus",
    "MeasurementRecord",
    "MetaLearningRecord",
    "ModelRecord",
    "Store",
    "VersionRecord",
    "VersionStatus",
    "clean_json",
    "utcnow",
]
