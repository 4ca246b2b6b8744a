"""fleet sync and quotas: the shared quota governor's table, sync coalescing and fleet scheduling columns

Revision ID: 0004_fleet_sync
Revises: 0003_never_synced
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import common.models

revision = "0004_fleet_sync"
down_revision = "0003_never_synced"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "google_quota",
        sa.Column("api", sa.String(32), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.Column("last_slot", sa.Float(), nullable=False),
        sa.Column("interval", sa.Float(), nullable=False),
        sa.Column("base_interval", sa.Float(), nullable=False),
        sa.Column("floor_interval", sa.Float(), nullable=False),
        sa.Column("floor_until", sa.Float(), nullable=False),
        sa.Column("last_throttled", sa.Float(), nullable=False),
        sa.Column("throttled_total", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("window_count", sa.Integer(), nullable=False),
        sa.Column("prev_window_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("api", name="pk_google_quota"),
    )
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("sync_message_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sync_queued_at", common.models.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("fleet_queued_at", common.models.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_integrations_last_synced", "integrations", ["last_synced_at"])


def downgrade() -> None:
    op.drop_index("ix_integrations_last_synced", table_name="integrations")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("fleet_queued_at")
        batch.drop_column("sync_queued_at")
        batch.drop_column("sync_message_id")
    op.drop_table("google_quota")
