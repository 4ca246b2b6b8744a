"""Coalescing user-asked syncs: while one is queued for an integration, asking again returns that one.

The API claims the integration's request slot (`sync_message_id`) with one conditional UPDATE before
publishing; the worker frees it when the sync starts, so a request made while a sync runs queues
exactly one more (it sees the new data), and 50 clicks are at most two syncs. A claim older than
STALE (its message lost to a crash between claim and publish) no longer blocks.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from common.models import Integration, utcnow

STALE = dt.timedelta(minutes=10)


def claim(sessions: sessionmaker[Session], integration_id: int, message_id: str) -> str | None:
    """Claim the request slot for `message_id`: None when claimed (publish it), else the queued sync's id."""
    now = utcnow()
    with sessions.begin() as s:
        claimed = s.execute(
            update(Integration)
            .where(
                Integration.id == integration_id,
                or_(Integration.sync_message_id.is_(None), Integration.sync_queued_at < now - STALE),
            )
            .values(sync_message_id=message_id, sync_queued_at=now)
            .returning(Integration.id)
        ).first()
        if claimed is not None:
            return None
        queued = s.scalar(select(Integration.sync_message_id).where(Integration.id == integration_id))
    return queued or None


def release(sessions: sessionmaker[Session], integration_id: int, message_id: str) -> None:
    """Free the slot held by `message_id` (its sync starts now, or it was never published)."""
    with sessions.begin() as s:
        s.execute(
            update(Integration)
            .where(Integration.id == integration_id, Integration.sync_message_id == message_id)
            .values(sync_message_id=None, sync_queued_at=None)
        )
