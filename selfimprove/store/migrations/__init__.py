"""Schema migrations through Alembic, run when a store opens.

``versions/`` holds one revision per schema version (``0001`` … ``0004``, the head is
:data:`~selfimprove.store.SCHEMA_VERSION`); ``env.py`` runs them on the connection the store
hands over. :func:`plan_upgrade` decides from what a store records (its ``meta.schema_version``
and its Alembic revision) and :func:`ensure_schema` carries the plan out under a lock that
serialises processes. Stores written before Alembic (schemas 1–4, no revision) are recognised
by their schema number and upgraded in place.

To change the schema: change ``_schema.py``, add ``versions/v<N>_<what>.py`` (revision
``000N``, idempotent operations from ``_ops``, ``record_schema(N)``), raise ``SCHEMA_VERSION``
and add the revision to :data:`REVISIONS`; ``tests/store/test_migrations.py`` checks that a
store built by the chain matches the models.
"""

from __future__ import annotations

from selfimprove.store.migrations._plan import (
    HEAD_REVISION,
    REVISIONS,
    SchemaAction,
    UpgradePlan,
    plan_upgrade,
)
from selfimprove.store.migrations._runner import (
    SCRIPT_LOCATION,
    WRITE_OPTION,
    ensure_schema,
    recorded_schema,
)

__all__ = [
    "HEAD_REVISION",
    "REVISIONS",
    "SCRIPT_LOCATION",
    "WRITE_OPTION",
    "SchemaAction",
    "UpgradePlan",
    "ensure_schema",
    "plan_upgrade",
    "recorded_schema",
]
