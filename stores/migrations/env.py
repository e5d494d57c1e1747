"""Alembic environment: migrations run on the connection the review store hands over.

`ReviewStore` opens the connection (SQLite under `BEGIN IMMEDIATE`, PostgreSQL under an advisory
lock), so two workers opening a fresh store at once migrate it once. Offline (SQL script) mode is
not supported: the store migrates itself.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the review store migrations run from ReviewStore, with its connection")
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
