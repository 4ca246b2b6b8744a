"""scheduler runs remember the message that claimed them

A redelivery of that same message (a worker killed mid fan-out) may claim the run again; a second
message for the same scheduled time (two schedulers, a restart) may not.

Revision ID: 0002_scheduler
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_scheduler"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduler_runs") as batch:
        batch.add_column(sa.Column("message_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduler_runs") as batch:
        batch.drop_column("message_id")
