"""The token-health query (the Laravel doc's monitoring SQL): active integrations whose last sync or refresh failed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.models import ACTIVE, Integration, User


def unhealthy_integrations(session: Session) -> list[tuple[Integration, str]]:
    """(integration, owner's email) with status 'active' and last_sync_status 'error', oldest id first."""
    rows = session.execute(
        select(Integration, User.email)
        .join(User, User.id == Integration.user_id)
        .where(Integration.status == ACTIVE, Integration.last_sync_status == "error")
        .order_by(Integration.id)
    ).all()
    return [(row, email) for row, email in rows]
