"""fleet sync claim: which fleet-sync message is syncing an integration, so two fan-outs never sync it at once

Revision ID: 0006_fleet_claim
Revises: 0005_web_sessions
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import common.models

revision = "0006_fleet_claim"
down_revision = "0005_web_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("fleet_message_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("fleet_started_at", common.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("fleet_started_at")
        batch.drop_column("fleet_message_id")
