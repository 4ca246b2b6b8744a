"""integrations never synced, by connection time: what the outbox sweep looks for every minute

A first sync the broker could not take at the OAuth callback is published again by the scheduler's
outbox sweep; this partial index keeps that query to the few never-synced rows at any fleet size.

Revision ID: 0003_never_synced
Revises: 0002_scheduler
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_never_synced"
down_revision = "0002_scheduler"
branch_labels = None
depends_on = None

WHERE = sa.text("last_synced_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_integrations_never_synced",
        "integrations",
        ["created_at"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_integrations_never_synced", table_name="integrations")
