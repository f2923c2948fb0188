"""Values in and out of the store: UTC times, JSON-safe copies, rows to frozen records."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from selfimprove.store.records import (
    CodeImprovementRecord,
    CodeImprovementStatus,
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    MetaLearningRecord,
    VersionRecord,
    VersionStatus,
    WeaknessRecord,
    WeaknessStatus,
)

__all__ = ["clean_json", "to_record", "utcnow"]

R = TypeVar("R")


def utcnow() -> datetime:
    """Naive UTC now (SQLite stores naive datetimes; every time in the store is UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def clean_json(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become ``None``, enums their value, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return clean_json(value.value)
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return clean_json(value.item())
    return value


#: Each record class's field names (``dataclasses.fields`` is slow enough to show per row).
_FIELDS: dict[type, tuple[str, ...]] = {}


def to_record(cls: type[R], row: Any) -> R:
    """The frozen record ``cls`` of a row (an ORM object, a plain row or a mapping with the
    same names).

    Stored strings of the record's enum fields become their enums.
    """
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if isinstance(row, Mapping):
        values: dict[str, Any] = {name: row[name] for name in names}
    else:
        values = {name: getattr(row, name) for name in names}
    if cls is VersionRecord:
        values["status"] = VersionStatus(values["status"])
    elif cls is ExperimentRecord:
        values["status"] = ExperimentStatus(values["status"])
        values["decision"] = Decision(values["decision"]) if values["decision"] else None
    elif cls is WeaknessRecord:
        values["status"] = WeaknessStatus(values["status"])
    elif cls is CodeImprovementRecord:
        values["status"] = CodeImprovementStatus(values["status"])
    elif cls is MetaLearningRecord and values.get("times_validated") is None:
        values["times_validated"] = 0
    return cls(**values)
