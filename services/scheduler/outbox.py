"""Outbox sweep: publish again the incident events whose email is still owed, and first syncs never run.

An incident is committed before its event is published (rule 4), so a crash in between, or a message
that exhausted its retries while the mail server was down, would leave an email unsent. The sweep finds
those from the database and publishes the event again; the notifier's per-incident lock and
`notified_at` make any extra message a no-op. Backoff without state: an incident is swept again
when its age crosses 1, 2, 4, 8, 16 and 32 minutes, then every hour, for up to 7 days (the link's life).

The same holds for a new integration's first sync: the OAuth callback commits the integration, then
publishes `integration_connected`; when the broker cannot take it (the user is told), an active
integration that was never synced and has no sync result is owed one, and gets it on the same marks of
its age. A sync is idempotent (upserts), so a message that was only slow costs a repeated sync at most.
"""

from __future__ import annotations

import datetime as dt

import dramatiq
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.logging import get_logger
from common.models import ACTIVE, Incident, Integration
from common.reconnect_links import LINK_TTL_SECONDS
from common.tasks import INTEGRATION_CONNECTED, NOTIFY_INCIDENT_CLOSED, NOTIFY_INCIDENT_OPENED, send

GRACE_SECONDS = 60
_MARKS = tuple(60 * 2**k for k in range(6))
_HOURLY = 3600

log = get_logger("integrations.outbox")


def is_due(age_seconds: float, since_last_sweep: float) -> bool:
    """Whether an event `age_seconds` old crossed a resend mark since the previous sweep."""
    before = age_seconds - since_last_sweep
    if any(before < mark <= age_seconds for mark in _MARKS):
        return True
    return age_seconds >= _HOURLY and int(age_seconds // _HOURLY) > int(max(before, 0) // _HOURLY)


def sweep(
    sessions: sessionmaker[Session], broker: dramatiq.Broker, now: dt.datetime, since_last: float
) -> list[tuple[str, int]]:
    """Publish the owed events that are due again; returns them as (actor name, incident or integration id)."""
    oldest = now - dt.timedelta(seconds=LINK_TTL_SECONDS)
    newest = now - dt.timedelta(seconds=GRACE_SECONDS)
    with sessions() as s:
        opened = s.execute(
            select(Incident.id, Incident.opened_at)
            .join(Integration, Integration.id == Incident.integration_id)
            .where(
                Incident.closed_at.is_(None),
                Incident.notified_at.is_(None),
                Incident.opened_at.between(oldest, newest),
                Integration.status == ACTIVE,
            )
        ).all()
        closed = s.execute(
            select(Incident.id, Incident.closed_at).where(
                Incident.kind == "reauth_required",
                Incident.notified_at.is_not(None),
                Incident.reconnected_notified_at.is_(None),
                Incident.closed_at.between(oldest, newest),
            )
        ).all()
        never_synced = s.execute(
            select(Integration.id, Integration.created_at).where(
                Integration.last_synced_at.is_(None),  # ix_integrations_never_synced
                Integration.created_at.between(oldest, newest),
                Integration.last_sync_status.is_(None),
                Integration.status == ACTIVE,
            )
        ).all()
    due = [(NOTIFY_INCIDENT_OPENED, i) for i, at in opened if is_due((now - at).total_seconds(), since_last)]
    due += [(NOTIFY_INCIDENT_CLOSED, i) for i, at in closed if at and is_due((now - at).total_seconds(), since_last)]
    syncs = [(INTEGRATION_CONNECTED, i) for i, at in never_synced if is_due((now - at).total_seconds(), since_last)]
    for actor, some_id in due + syncs:
        send(broker, actor, some_id)
    if due:
        log.info("outbox.republished", count=len(due), incident_ids=[i for _, i in due][:50])
    if syncs:
        log.info("outbox.first_syncs_published", count=len(syncs), integration_ids=[i for _, i in syncs][:50])
    return due + syncs
