"""The operators' page figures: integrations by state, those needing attention, open incidents, last runs."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.models import ACTIVE, DISCONNECTED, Incident, Integration, SchedulerRun, User

STATES = ("healthy", "needs_reauth", "provider_config", "transient_error", "never_synced", "stale", "disconnected")
# Until "Fleet sync" brings SYNC_INTERVAL_HOURS, a connection unsynced for two days counts as stale.
DEFAULT_STALE_AFTER = dt.timedelta(hours=48)


@dataclass(frozen=True)
class Attention:
    integration_id: int
    name: str
    user_email: str
    problem: str
    message: str
    since: dt.datetime | None


@dataclass(frozen=True)
class OpenIncident:
    id: int
    integration_id: int
    kind: str
    reason: str
    opened_at: dt.datetime
    emailed: bool


@dataclass(frozen=True)
class LastRun:
    job: str
    scheduled_for: dt.datetime
    started_at: dt.datetime


def state_of(row: Integration, now: dt.datetime, stale_after: dt.timedelta) -> str:
    """One state per integration (the same names as the `integrations_integrations` gauge)."""
    if row.status == DISCONNECTED:
        return "disconnected"
    if row.needs_reauth:
        return "needs_reauth"
    if row.error_kind == "provider_config":
        return "provider_config"
    if row.last_sync_status == "error":
        return "transient_error"
    if row.last_synced_at is None:
        return "never_synced"
    if now - row.last_synced_at > stale_after:
        return "stale"
    return "healthy"


def overview(
    s: Session, now: dt.datetime, stale_after: dt.timedelta = DEFAULT_STALE_AFTER
) -> tuple[dict[str, int], list[Attention]]:
    """Counts by state, and the integrations needing attention (the health query, plus stale ones), oldest first."""
    counts: Counter[str] = Counter()
    attention: list[Attention] = []
    rows = s.execute(select(Integration, User.email).join(User, User.id == Integration.user_id)).all()
    # "Since when": the open incident's start (the first failure), else the last failure seen.
    open_rows = s.execute(select(Incident.integration_id, Incident.opened_at).where(Incident.closed_at.is_(None)))
    opened = {iid: at for iid, at in open_rows.all()}
    for row, email in rows:
        state = state_of(row, now, stale_after)
        counts[state] += 1
        if row.status == ACTIVE and state not in ("healthy", "never_synced"):
            failed = opened.get(row.id) or row.last_refresh_failed_at
            since = row.last_synced_at if state == "stale" else failed
            message = row.last_sync_message or ("no sync since" if state == "stale" else "")
            attention.append(Attention(row.id, row.display_name, email, state, message, since or row.updated_at))
    attention.sort(key=lambda a: (a.since or now, a.integration_id))
    return {state: counts.get(state, 0) for state in STATES}, attention


def open_incidents(s: Session, limit: int = 50) -> list[OpenIncident]:
    rows = s.execute(
        select(Incident).where(Incident.closed_at.is_(None)).order_by(Incident.opened_at).limit(limit)
    ).scalars()
    return [
        OpenIncident(r.id, r.integration_id, r.kind, r.reason, r.opened_at, r.notified_at is not None) for r in rows
    ]


def last_runs(s: Session) -> list[LastRun]:
    """The latest claimed run of each scheduled job (refresh-all, and sync-all once Fleet sync lands)."""
    latest = (
        select(SchedulerRun.job, func.max(SchedulerRun.scheduled_for).label("at")).group_by(SchedulerRun.job).subquery()
    )
    rows = s.execute(
        select(SchedulerRun).join(
            latest, (SchedulerRun.job == latest.c.job) & (SchedulerRun.scheduled_for == latest.c.at)
        )
    ).scalars()
    return sorted((LastRun(r.job, r.scheduled_for, r.created_at) for r in rows), key=lambda r: r.job)
