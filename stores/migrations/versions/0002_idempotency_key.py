"""Reviews carry the client's Idempotency-Key, unique: a retried POST /reviews is stored once.

The column is nullable: reviews recorded before (and any recorded without a key) have none, and
their hashes do not change (stores/reviews.py hashes the key only when it is set). A unique index,
not a table constraint, because SQLite cannot add a constraint to an existing table; it allows any
number of NULLs on both backends. No UPDATE of existing rows: the append-only triggers stay as they
are.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reviews", sa.Column("idempotency_key", sa.String(128), nullable=True))
    op.create_index("reviews_idempotency_key", "reviews", ["idempotency_key"], unique=True)


def downgrade() -> None:
    raise NotImplementedError("the review store is an audit trail: it is never downgraded")
