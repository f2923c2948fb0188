"""Which migration a store needs: a pure decision from what the store records about itself."""

from __future__ import annotations

import dataclasses
import enum

from selfimprove.store._schema import SCHEMA_VERSION

__all__ = ["HEAD_REVISION", "REVISIONS", "SchemaAction", "UpgradePlan", "plan_upgrade"]

#: The Alembic revision of each schema version (``versions/v<N>_*.py``).
REVISIONS: dict[int, str] = {
    1: "0001",
    2: "0002",
    3: "0003",
    4: "0004",
    5: "0005",
    6: "0006",
}
HEAD_REVISION = REVISIONS[SCHEMA_VERSION]
_SCHEMA_OF = {revision: version for version, revision in REVISIONS.items()}


class SchemaAction(enum.Enum):
    """What opening a store does to its schema."""

    NOTHING = "nothing"  # at the head already
    CREATE = "create"  # a new store: every table at once, stamped at the head
    UPGRADE = "upgrade"  # run the revisions after ``UpgradePlan.start``
    REFUSE = "refuse"  # written by a newer selfimprove: touch nothing


@dataclasses.dataclass(frozen=True)
class UpgradePlan:
    """The decision of :func:`plan_upgrade` and its reason.

    Attributes:
        action: What to do.
        restamp: Whether to stamp the store at ``start`` first (it has no Alembic revision that
            matches its recorded schema); otherwise the upgrade starts at its own revision.
        start: The revision to stamp (``None``: before the first revision, an empty chain).
        reason: Why, in words.
    """

    action: SchemaAction
    restamp: bool
    start: str | None
    reason: str


def plan_upgrade(schema: int | None, revision: str | None) -> UpgradePlan:
    """Decide how to bring a store to the head from what it records.

    A new store (nothing recorded) is created from the models at once and stamped at the head,
    Alembic's recipe for a database built from scratch (a test checks that the revision chain
    builds the same schema). A store written before Alembic has only its
    ``meta.schema_version``; it is stamped one revision before that number and the revision of
    its number is replayed, because the releases of schema 4 added indexes without raising the
    number (every operation of a revision is idempotent, so a replay adds only what is
    missing). When the recorded schema and the Alembic revision disagree (a store taken back by
    hand), the schema number wins; with no schema number, the revision is replayed.

    Args:
        schema: The ``meta`` table's ``schema_version`` (``None``: no such row or table).
        revision: The ``alembic_version`` row (``None``: no such row or table).

    Returns:
        The plan and its reason.
    """
    if revision is not None and revision not in _SCHEMA_OF:
        return UpgradePlan(
            SchemaAction.REFUSE, False, None, f"records Alembic revision {revision!r}"
        )
    if schema is not None and schema > SCHEMA_VERSION:
        return UpgradePlan(
            SchemaAction.REFUSE, False, None, f"was written by schema version {schema}"
        )
    if schema is None and revision is None:
        return UpgradePlan(SchemaAction.CREATE, True, HEAD_REVISION, "a new store")
    if revision is not None and schema is not None and _SCHEMA_OF[revision] == schema:
        if revision == HEAD_REVISION:
            return UpgradePlan(SchemaAction.NOTHING, False, revision, "at the head")
        return UpgradePlan(
            SchemaAction.UPGRADE, False, revision, f"revision {revision} is before the head"
        )
    number = schema if schema is not None else _SCHEMA_OF[str(revision)]
    if number < 1:
        return UpgradePlan(SchemaAction.UPGRADE, True, None, f"schema {number} predates 1")
    return UpgradePlan(
        SchemaAction.UPGRADE,
        True,
        REVISIONS.get(number - 1),
        f"schema {number} without its Alembic revision: stamped before it and replayed",
    )
