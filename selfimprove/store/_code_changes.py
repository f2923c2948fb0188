"""The engine's record of changes: code improvements, the audit trail, the version changelog
and measured before/after comparisons."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from selfimprove.errors import NotFoundError, StoreError
from selfimprove.store._convert import clean_json, to_record, utcnow
from selfimprove.store._database import Database
from selfimprove.store._schema import (
    AuditRow,
    CodeImprovementRow,
    ImprovementHistoryRow,
    ImprovementMeasurementRow,
)
from selfimprove.store.records import (
    AuditRecord,
    CodeImprovementRecord,
    CodeImprovementStatus,
    HistoryRecord,
    ImprovementMeasurementRecord,
)

__all__ = ["CodeChangeRepository"]


def _stored(value: Any) -> Any:
    """A field as stored: bytes as they are (file contents), anything else JSON-clean."""
    return value if isinstance(value, bytes) else clean_json(value)


def _unknown(improvement_id: int) -> NotFoundError:
    return NotFoundError(
        f"unknown code improvement id {improvement_id}; see `selfimprove engine improvements`."
    )


class CodeChangeRepository(Database):
    """The ``code_improvements``, ``audit_trail``, ``improvement_history`` and
    ``improvement_measurements`` tables (a part of :class:`~selfimprove.store.Store`)."""

    # ------------------------------------------------------------------ code improvements
    def add_code_improvement(self, **fields: Any) -> CodeImprovementRecord:
        """Insert a pending code improvement (fields of :class:`CodeImprovementRecord`)."""
        values: dict[str, Any] = {
            "status": CodeImprovementStatus.PENDING.value,
            "reason": "",
            "check_before": {},
            "check_after": {},
            "performance": {},
            "decided_by": None,
            "created_at": utcnow(),
        }
        duplicated = sorted(set(values) & set(fields))
        if duplicated:  # the ORM constructor refused these too (a keyword given twice)
            raise StoreError(f"a new code improvement sets {duplicated} itself; leave them out.")
        values.update({k: _stored(v) for k, v in fields.items()})
        return self._insert(CodeImprovementRow, [values], CodeImprovementRecord)[0]

    def update_code_improvement(self, improvement_id: int, **changes: Any) -> CodeImprovementRecord:
        """Change fields of a code improvement (enums and NaN converted for storage).

        Raises:
            NotFoundError: No such code improvement.
            StoreError: A field code improvements do not have.
        """
        with self.transaction() as s:
            row = s.get(CodeImprovementRow, improvement_id)
            if row is None:
                raise _unknown(improvement_id)
            for key, value in changes.items():
                if key not in CodeImprovementRow.__table__.columns or key == "id":
                    raise StoreError(f"code improvements have no field {key!r}.")
                setattr(row, key, _stored(value))
            s.flush()
            return to_record(CodeImprovementRecord, row)

    def get_code_improvement(self, improvement_id: int) -> CodeImprovementRecord:
        """The code improvement with this id.

        Raises:
            NotFoundError: No such code improvement.
        """
        with self.read() as s:
            row = s.get(CodeImprovementRow, improvement_id)
            if row is None:
                raise _unknown(improvement_id)
            return to_record(CodeImprovementRecord, row)

    def list_code_improvements(
        self, status: CodeImprovementStatus | None = None
    ) -> list[CodeImprovementRecord]:
        """Code improvements, oldest first (only those in ``status`` if given)."""
        with self.read() as s:
            q = select(CodeImprovementRow).order_by(CodeImprovementRow.id)
            if status is not None:
                q = q.where(CodeImprovementRow.status == status.value)
            return [to_record(CodeImprovementRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ audit trail
    def add_audit(
        self,
        action: str,
        actor: str,
        *,
        improvement_id: int | None = None,
        file_path: str = "",
        sha256_before: str | None = None,
        sha256_after: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one entry to the audit trail."""
        values = {
            "action": action,
            "actor": actor,
            "improvement_id": improvement_id,
            "file_path": file_path,
            "sha256_before": sha256_before,
            "sha256_after": sha256_after,
            "details": clean_json(details or {}),
            "created_at": utcnow(),
        }
        return self._insert(AuditRow, [values], AuditRecord)[0]

    def list_audit(
        self, improvement_id: int | None = None, *, limit: int | None = None
    ) -> list[AuditRecord]:
        """Audit entries, oldest first (of one improvement if given; the newest ``limit``)."""
        with self.read() as s:
            q = select(AuditRow).order_by(AuditRow.id.desc())
            if improvement_id is not None:
                q = q.where(AuditRow.improvement_id == improvement_id)
            if limit is not None:
                q = q.limit(limit)
            return [to_record(AuditRecord, r) for r in reversed(list(s.scalars(q)))]

    # ------------------------------------------------------------------ changelog
    def add_history_entry(
        self,
        version: str,
        summary: str,
        *,
        improvements: list[Any],
        performance_delta: float | None,
        changes: list[Any],
    ) -> HistoryRecord:
        """Append one version to the improvement changelog."""
        values = {
            "version": version,
            "summary": summary,
            "improvements": clean_json(improvements),
            "performance_delta": clean_json(performance_delta),
            "changes": clean_json(changes),
            "created_at": utcnow(),
        }
        return self._insert(ImprovementHistoryRow, [values], HistoryRecord)[0]

    def list_history_entries(self, limit: int | None = None) -> list[HistoryRecord]:
        """Changelog entries, newest first."""
        with self.read() as s:
            q = select(ImprovementHistoryRow).order_by(ImprovementHistoryRow.id.desc())
            if limit is not None:
                q = q.limit(limit)
            return [to_record(HistoryRecord, r) for r in s.scalars(q)]

    # ------------------------------------------------------------------ comparisons
    def add_improvement_measurement(self, **fields: Any) -> ImprovementMeasurementRecord:
        """Record one measured before/after comparison (fields of the record, no id).

        Raises:
            StoreError: ``measured_at`` given (the store sets it).
        """
        if "measured_at" in fields:
            raise StoreError("a comparison's measured_at is set by the store; leave it out.")
        values = {"measured_at": utcnow(), **{k: clean_json(v) for k, v in fields.items()}}
        return self._insert(ImprovementMeasurementRow, [values], ImprovementMeasurementRecord)[0]

    def list_improvement_measurements(
        self, metric_name: str | None = None
    ) -> list[ImprovementMeasurementRecord]:
        """Measured comparisons, oldest first (of one metric if named)."""
        with self.read() as s:
            q = select(ImprovementMeasurementRow).order_by(ImprovementMeasurementRow.id)
            if metric_name is not None:
                q = q.where(ImprovementMeasurementRow.metric_name == metric_name)
            return [to_record(ImprovementMeasurementRecord, r) for r in s.scalars(q)]
