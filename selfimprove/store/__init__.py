"""The store: the one place that talks SQL, and the frozen records it returns.

The tree shows the jobs:

- ``_liveness.py`` — who runs an experiment (owner, heartbeat) and the rule that makes it stale.
- ``_database.py`` — plumbing: the engine (SQLite with WAL, busy timeout and foreign keys by
  default; PostgreSQL by URL), the one ``transaction()`` / ``batch()`` / ``read()`` session
  helper and the one ``_insert`` every insert goes through.
- ``migrations/`` — Alembic revisions, one per schema version, run when a store opens.
- ``_schema.py`` — the SQLAlchemy tables; ``records.py`` — the frozen records and their enums;
  ``_convert.py`` — UTC times, JSON-safe values, rows to records.
- one repository per concept: ``_models.py`` (models and versions), ``_capabilities.py``
  (capabilities and measurements), ``_experiments.py``, ``_events.py`` (events, component state,
  cycle metrics), ``_meta_learnings.py``, ``_weaknesses.py``, ``_code_changes.py`` (code
  improvements, audit trail, changelog, before/after comparisons).

:class:`Store` is assembled from the repositories as mixins, each a subclass of the plumbing's
``Database`` that declares only its own tables' methods (none re-declares another's). Chosen
over composition with delegation because the public contract is ``store.verb(...)`` with 70-odd
verbs used across every layer: delegation would repeat each signature a second time in a
forwarding method, while the mixins keep each verb written once, in the module of its concept,
and mypy sees every method of ``Store`` with its real signature.
"""

from __future__ import annotations

from selfimprove.store._convert import clean_json, utcnow
from selfimprove.store._liveness import Liveness, liveness, process_owner
from selfimprove.store._schema import SCHEMA_VERSION
from selfimprove.store._store import Store
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
    "Liveness",
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
    "liveness",
    "process_owner",
    "utcnow",
]
