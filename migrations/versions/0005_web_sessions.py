"""web sessions and sign-in links; OAuth states bound to a browser session

People sign in by an emailed, single-use link (`sign_in_links`) and get a server-side session
(`web_sessions`, revocable on sign-out); "Sync now" on the page is remembered
(`integrations.sync_requested_at`) so the page can say "Syncing". A connect started by the JSON API
waits for its user's browser (`oauth_states.awaiting_browser`, `login_hint`) and is then bound to that
browser's session (`session_hash`).

Revision ID: 0005_web_sessions
Revises: 0003_never_synced
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from common.models import UTCDateTime

revision = "0005_web_sessions"
# The lead re-chains this after 0004 when both land.
down_revision = "0004_fleet_sync"
branch_labels = None
depends_on = None

UTC = UTCDateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_id", Id, nullable=True),
        sa.Column("operator", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name="pk_web_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_web_sessions_user_id_users", ondelete="CASCADE"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "sign_in_links",
        sa.Column("id", Id, nullable=False),
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("next_path", sa.String(512), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.Column("used_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in_links"),
        sa.UniqueConstraint("jti", name="uq_sign_in_links_jti"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_sign_in_links_user_id_users", ondelete="CASCADE"),
    )
    with op.batch_alter_table("oauth_states") as batch:
        batch.add_column(sa.Column("awaiting_browser", sa.Boolean(), nullable=False, server_default=sa.text("false")))
        batch.add_column(sa.Column("session_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("login_hint", sa.String(320), nullable=True))
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("sync_requested_at", UTC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("sync_requested_at")
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_column("login_hint")
        batch.drop_column("session_hash")
        batch.drop_column("awaiting_browser")
    op.drop_table("sign_in_links")
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
