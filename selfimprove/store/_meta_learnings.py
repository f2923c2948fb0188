"""Meta-learnings: what the system has learnt about its own learning, one per (kind, subject)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from selfimprove.store._convert import clean_json, to_record, utcnow
from selfimprove.store._database import Database
from selfimprove.store._schema import MetaLearningRow
from selfimprove.store.records import MetaLearningRecord

__all__ = ["MetaLearningRepository"]


def _find(s: Session, kind: str, subject: str) -> MetaLearningRow | None:
    return s.scalar(
        select(MetaLearningRow).where(
            MetaLearningRow.kind == kind, MetaLearningRow.subject == subject
        )
    )


class MetaLearningRepository(Database):
    """The ``meta_learnings`` table (a part of :class:`~selfimprove.store.Store`)."""

    def upsert_meta_learning(
        self,
        kind: str,
        subject: str,
        *,
        statement: str,
        count: int,
        successes: int,
        confidence: float,
        evidence: dict[str, Any] | None = None,
    ) -> MetaLearningRecord:
        """Create or refresh the meta-learning for (``kind``, ``subject``)."""
        return self._save_meta_learning(
            kind,
            subject,
            statement=statement,
            count=count,
            successes=successes,
            confidence=confidence,
            evidence=evidence,
            validated=False,
        )

    def record_meta_learning(
        self,
        kind: str,
        subject: str,
        *,
        statement: str,
        count: int,
        successes: int,
        confidence: float,
        evidence: dict[str, Any] | None = None,
        validated: bool = False,
    ) -> MetaLearningRecord:
        """Create or refresh a meta-learning, counting a validation when ``validated``.

        Like :meth:`upsert_meta_learning`, plus ``times_validated``: it grows by one when the
        row already existed and the caller says the new observation agrees with it.
        """
        return self._save_meta_learning(
            kind,
            subject,
            statement=statement,
            count=count,
            successes=successes,
            confidence=confidence,
            evidence=evidence,
            validated=validated,
        )

    def _save_meta_learning(
        self,
        kind: str,
        subject: str,
        *,
        statement: str,
        count: int,
        successes: int,
        confidence: float,
        evidence: dict[str, Any] | None,
        validated: bool,
    ) -> MetaLearningRecord:
        """The one upsert of both public verbs (a new row starts with ``times_validated`` 0)."""
        now = utcnow()
        values = {
            "statement": statement,
            "count": count,
            "successes": successes,
            "confidence": float(confidence),
            "evidence": clean_json(evidence or {}),
            "updated_at": now,
        }
        with self.transaction() as s:
            self._serialise(s, f"meta_learning:{kind}:{subject}")  # one insert, never two
            row = _find(s, kind, subject)
            if row is None:
                new = {"kind": kind, "subject": subject, "created_at": now, "times_validated": 0}
                new.update(values)
                return self._insert(MetaLearningRow, [new], MetaLearningRecord, session=s)[0]
            if validated:
                row.times_validated = (row.times_validated or 0) + 1
            for key, value in values.items():
                setattr(row, key, value)
            s.flush()
            return to_record(MetaLearningRecord, row)

    def list_meta_learnings(self, kind: str | None = None) -> list[MetaLearningRecord]:
        """Meta-learnings by id (of one kind if given)."""
        with self.read() as s:
            q = select(MetaLearningRow).order_by(MetaLearningRow.id)
            if kind is not None:
                q = q.where(MetaLearningRow.kind == kind)
            return [to_record(MetaLearningRecord, r) for r in s.scalars(q)]

    def find_meta_learning(self, kind: str, subject: str) -> MetaLearningRecord | None:
        """The meta-learning for (``kind``, ``subject``), or ``None``."""
        with self.read() as s:
            row = _find(s, kind, subject)
            return to_record(MetaLearningRecord, row) if row is not None else None
