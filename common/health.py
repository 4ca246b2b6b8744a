"""The token-health query (the Laravel doc's monitoring SQL): active integrations whose last sync or refresh
failed, and those whose last successful sync is older than two sync intervals (the fleet sync fell behind)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from common.models import ACTIVE, Integration, User, utcnow

STALE_INTERVALS = 2


def unhealthy_integrations(session: Session, sync_interval_hours: float | None = None) -> list[tuple[Integration, str]]:
    """(integration, owner's email), oldest id first: status 'active' and last_sync_status 'error', or (with
    `sync_interval_hours`) not needing re-auth and not synced successfully for 2 intervals (never-synced ones
    counted from their connection)."""
    failing = Integration.last_sync_status == "error"
    if sync_interval_hours:
        cutoff = utcnow() - dt.timedelta(hours=STALE_INTERVALS * sync_interval_hours)
        stale = and_(
            Integration.needs_reauth.is_(False),
            func.coalesce(Integration.last_synced_at, Integration.created_at) < cutoff,
        )
        failing = or_(failing, stale)
    rows = session.execute(
        select(Integration, User.email)
        .join(User, User.id == Integration.user_id)
        .where(Integration.status == ACTIVE, failing)
        .order_by(Integration.id)
    ).all()
    return [(row, email) for row, email in rows]
