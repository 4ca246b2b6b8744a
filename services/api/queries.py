"""The API's reads and small writes, as plain functions of a sessionmaker (run them in a worker thread)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.errors import IntegrationInactive, IntegrationNotFound
from common.health import unhealthy_integrations
from common.models import ACTIVE, Insight, Integration
from services.api.serialize import insight_json, integration_json


def owned(s: Session, user_id: int, integration_id: int) -> Integration:
    """The caller's integration; someone else's is exactly as absent as a missing one."""
    row = s.get(Integration, integration_id)
    if row is None or row.user_id != user_id:
        raise IntegrationNotFound(f"integration {integration_id} does not exist")
    return row


def list_integrations(sessions: sessionmaker[Session], user_id: int) -> list[dict[str, Any]]:
    with sessions() as s:
        rows = s.execute(select(Integration).where(Integration.user_id == user_id).order_by(Integration.id)).scalars()
        return [integration_json(r) for r in rows]


def get_integration(sessions: sessionmaker[Session], user_id: int, integration_id: int) -> dict[str, Any]:
    with sessions() as s:
        return integration_json(owned(s, user_id, integration_id))


def check_workable(sessions: sessionmaker[Session], user_id: int, integration_id: int) -> None:
    """Raise unless work (sync, refresh) can succeed for the integration without the user stepping in."""
    with sessions() as s:
        row = owned(s, user_id, integration_id)
        if row.status != ACTIVE:
            raise IntegrationInactive(
                f"Integration {row.id} is disconnected; connect the Google account again to sync it."
            )
        if row.needs_reauth:
            detail = f" ({row.last_sync_message})" if row.last_sync_message else ""
            raise IntegrationInactive(
                f"Integration {row.id} needs re-authentication{detail}; reconnect it before syncing."
            )


def list_insights(
    sessions: sessionmaker[Session], user_id: int, integration_id: int, start: dt.date, end: dt.date
) -> list[dict[str, Any]]:
    with sessions() as s:
        owned(s, user_id, integration_id)
        rows = s.execute(
            select(Insight)
            .where(Insight.integration_id == integration_id, Insight.date >= start, Insight.date <= end)
            .order_by(Insight.date, Insight.location, Insight.metric)
        ).scalars()
        return [insight_json(r) for r in rows]


def token_health(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    """The health report (as `integrations health`): active integrations whose last sync or refresh failed."""
    with sessions() as s:
        return [{**integration_json(row), "user_email": email} for row, email in unhealthy_integrations(s)]
