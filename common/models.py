"""Database schema: users, integrations, locations, insights, OAuth states, web sessions, incidents, scheduler runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ACTIVE = "active"
DISCONNECTED = "disconnected"
GOOGLE = "google"
OAUTH2 = "oauth2"

# BigInteger ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use an aware UTC datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        moment: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Integration(Base):
    __tablename__ = "integrations"
    __table_args__ = (
        UniqueConstraint("user_id", "platform", "external_account_id"),
        Index("ix_integrations_due", "status", "auth_type", "token_expires_at", "id"),
        Index("ix_integrations_last_synced", "last_synced_at"),
        # The outbox sweep's first syncs still owed (services/scheduler/outbox.py).
        Index(
            "ix_integrations_never_synced",
            "created_at",
            postgresql_where=text("last_synced_at IS NULL"),
            sqlite_where=text("last_synced_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32), default=GOOGLE)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    auth_type: Mapped[str] = mapped_column(String(16), default=OAUTH2)
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    granted_scopes: Mapped[str] = mapped_column(Text, default="")
    external_account_id: Mapped[str | None] = mapped_column(String(255))
    external_account_email: Mapped[str | None] = mapped_column(String(320))
    last_sync_status: Mapped[str | None] = mapped_column(String(16))
    last_sync_message: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    needs_reauth: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_reason: Mapped[str | None] = mapped_column(String(64))
    refresh_failure_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_refresh_failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_refreshed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When a person last pressed "Sync now" on the Integrations page: it shows "Syncing" until the sync ends.
    sync_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A user-asked sync queued and not yet started (coalescing, services/api/sync_requests.py).
    sync_message_id: Mapped[str | None] = mapped_column(String(64))
    sync_queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the scheduler last queued this integration's fleet sync (common/fleet_sync.py).
    fleet_queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The fleet-sync message syncing it now, and since when (common/fleet_sync.py claim_fleet_sync).
    fleet_message_id: Mapped[str | None] = mapped_column(String(64))
    fleet_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Location(Base):
    __tablename__ = "locations"
    __table_args__ = (UniqueConstraint("integration_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    account_name: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(512), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Insight(Base):
    """One daily metric value; the primary key is the natural key, so re-syncs upsert."""

    __tablename__ = "insights"

    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"), primary_key=True)
    location: Mapped[str] = mapped_column(String(255), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OAuthState(Base):
    """A single-use OAuth `state`, bound to the user (and, for a reconnect, to the integration)."""

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    integration_id: Mapped[int | None] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    code_verifier: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A connect started by the JSON API waits for the flow's user to open it in a signed-in browser; only
    # then is it bound to that browser's session (`session_hash`), and the callback insists on that session.
    awaiting_browser: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    session_hash: Mapped[str | None] = mapped_column(String(64))
    login_hint: Mapped[str | None] = mapped_column(String(320))


class WebSession(Base):
    """A browser's signed-in session; the cookie holds a random id, the table only its SHA-256."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # None for an operator's session (signed in with the admin key).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    operator: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SignInLink(Base):
    """An emailed sign-in link's single-use record; the link itself is signed over `jti`."""

    __tablename__ = "sign_in_links"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    next_path: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Incident(Base):
    """One broken-connection episode of an integration; at most one open at a time, one email each."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index(
            "uq_incidents_open",
            "integration_id",
            unique=True,
            postgresql_where=text("closed_at IS NULL"),
            sqlite_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    reconnected_notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ReconnectToken(Base):
    """A reconnect link's single-use record (the link itself is signed; this makes it single-use)."""

    __tablename__ = "reconnect_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SchedulerRun(Base):
    """A scheduled job's run key; the unique key makes a duplicate fire a no-op."""

    __tablename__ = "scheduler_runs"

    run_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    scheduled_for: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    message_id: Mapped[str | None] = mapped_column(String(64))


class GoogleQuota(Base):
    """One Google API's shared pace (common/quota.py): a GCRA slot clock and the counters operators see.

    Times are Unix seconds (the database's clock on PostgreSQL), so every host reads one clock.
    """

    __tablename__ = "google_quota"

    api: Mapped[str] = mapped_column(String(32), primary_key=True)
    tat: Mapped[float] = mapped_column(Float, default=0.0)
    last_slot: Mapped[float] = mapped_column(Float, default=0.0)
    interval: Mapped[float] = mapped_column(Float)
    base_interval: Mapped[float] = mapped_column(Float)
    floor_interval: Mapped[float] = mapped_column(Float)
    floor_until: Mapped[float] = mapped_column(Float, default=0.0)
    last_throttled: Mapped[float] = mapped_column(Float, default=0.0)
    throttled_total: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[float] = mapped_column(Float, default=0.0)
    window_count: Mapped[int] = mapped_column(Integer, default=0)
    prev_window_count: Mapped[int] = mapped_column(Integer, default=0)
