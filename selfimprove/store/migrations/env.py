"""Alembic's environment: migrations run on the connection the store hands over.

:func:`selfimprove.store.migrations.ensure_schema` opens the connection, takes the migration
lock and begins the transaction; Alembic runs inside it (nothing is committed here).
"""

from __future__ import annotations

from alembic import context

from selfimprove.store._schema import Base

context.configure(connection=context.config.attributes["connection"], target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
