"""The web pages' reads and small writes (blocking: run them in a worker thread)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from common.errors import IntegrationInactive
from common.models import ACTIVE, Insight, Integration, Location, User, utcnow
from services.api.queries import owned
from services.api.web.status import Status, status_of


@dataclass(frozen=True)
class Card:
    """One integration as the Integrations page shows it (never a token: only these fields reach a template)."""

    id: int
    platform: str
    name: str
    status: Status
    last_synced_at: dt.datetime | None
    google_email: str | None
    active: bool


def _card(row: Integration, now: dt.datetime) -> Card:
    return Card(
        id=row.id,
        platform="Google Business Profile" if row.platform == "google" else row.platform,
        name=row.display_name or "Google Business Profile",
        status=status_of(row, now),
        last_synced_at=row.last_synced_at,
        google_email=row.external_account_email,
        active=row.status == ACTIVE,
    )


def cards(sessions: sessionmaker[Session], user_id: int) -> tuple[str, list[Card]]:
    """The user's email and their integrations, oldest first."""
    now = utcnow()
    with sessions() as s:
        email = s.execute(select(User.email).where(User.id == user_id)).scalar_one()
        rows = s.execute(select(Integration).where(Integration.user_id == user_id).order_by(Integration.id)).scalars()
        return email, [_card(r, now) for r in rows]


def card(sessions: sessionmaker[Session], user_id: int, integration_id: int) -> Card:
    """The user's integration; IntegrationNotFound (a 404) for someone else's."""
    with sessions() as s:
        return _card(owned(s, user_id, integration_id), utcnow())


def request_sync(sessions: sessionmaker[Session], user_id: int, integration_id: int) -> None:
    """Check the integration can sync now and remember the request (the page shows "Syncing")."""
    now = utcnow()
    with sessions.begin() as s:
        row = owned(s, user_id, integration_id)
        if row.status != ACTIVE or row.needs_reauth:
            raise IntegrationInactive("This connection needs you first: reconnect it, then sync.")
        # updated_at is kept as it was: a failure recorded later is what moves it (status._syncing).
        s.execute(
            update(Integration)
            .where(Integration.id == integration_id)
            .values(sync_requested_at=now, updated_at=Integration.updated_at)
        )


def reconnect_target(sessions: sessionmaker[Session], user_id: int, integration_id: int) -> str | None:
    """The Google account to preselect for a reconnect of the user's integration."""
    with sessions() as s:
        row = owned(s, user_id, integration_id)
        if row.status != ACTIVE:
            raise IntegrationInactive("This connection was disconnected: connect Google Business Profile again.")
        return row.external_account_email


def series(
    sessions: sessionmaker[Session], user_id: int, integration_id: int, metric: str | None, start: dt.date
) -> tuple[list[str], str | None, list[tuple[str, dt.date, int]], dict[str, str]]:
    """The metrics stored for the integration, the chosen one, its (location, date, value) rows from `start`,
    and the locations' titles by resource name."""
    with sessions() as s:
        owned(s, user_id, integration_id)
        metrics = sorted(
            s.execute(select(Insight.metric).where(Insight.integration_id == integration_id).distinct()).scalars()
        )
        chosen = metric if metric in metrics else (metrics[0] if metrics else None)
        rows = s.execute(
            select(Insight.location, Insight.date, Insight.value)
            .where(Insight.integration_id == integration_id, Insight.metric == chosen, Insight.date >= start)
            .order_by(Insight.date, Insight.location)
        ).all()
        located = select(Location.name, Location.title).where(Location.integration_id == integration_id)
        titles = {name: title for name, title in s.execute(located).all()}
        return metrics, chosen, [(loc, day, int(value)) for loc, day, value in rows], titles
