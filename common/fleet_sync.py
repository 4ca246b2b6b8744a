"""Fleet sync: every active integration not needing re-auth synced once per SYNC_INTERVAL_HOURS, spread evenly.

Two ways in, one message: `fleet_sync_integration(id)` on the fleet queue, carrying `requested_at`.
- The scheduler's minute tick (`schedule_due`) queues the integrations whose last successful sync is
  older than the interval, at most SPREAD_FACTOR x (fleet / minutes in the interval) per tick, so the
  day's syncs (and Google calls) are spread instead of bursting. Each is claimed with `fleet_queued_at`
  in one UPDATE, so two schedulers never queue the same integration twice.
- `sync-all` (`publish_sync_all`) queues every one now.
A fleet sync is skipped when the integration was synced since `requested_at`: a redelivered or
repeated fan-out does not double the work, and a killed worker's messages are redone.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from common.bulk_publish import publish_many
from common.logging import get_logger
from common.models import ACTIVE, Integration, utcnow
from common.tasks import FLEET_SYNC, build_message

SPREAD_FACTOR = 1.25  # a little above the average, so a backlog (deferrals, an outage) catches up
# A fleet sync's claim outlives any live sync (the actor's time limit is 10 minutes): older, its worker is gone.
CLAIM_TTL = dt.timedelta(minutes=15)
PAGE = 1000

log = get_logger("integrations.fleet")


def _eligible() -> list[ColumnElement[bool]]:
    return [Integration.status == ACTIVE, Integration.needs_reauth.is_(False)]


def claim_fleet_sync(
    sessions: sessionmaker[Session], integration_id: int, message_id: str, requested_at: dt.datetime
) -> str | None:
    """None when this fleet-sync message may sync the integration now, else why not: `synced_since_requested`
    (synced at or after `requested_at`) or `syncing_elsewhere` (another fleet-sync message holds it; a claim
    older than CLAIM_TTL is a lost one's and is taken over).

    One conditional UPDATE, so two fan-outs (a repeated sync-all, a scheduler tick beside it) handled at the same
    moment by two workers never sync one integration twice; the redelivery of a killed worker's message carries the
    same message id and takes its own claim back at once.
    """
    now = utcnow()
    with sessions.begin() as s:
        claimed = s.execute(
            update(Integration)
            .where(
                Integration.id == integration_id,
                or_(Integration.last_synced_at.is_(None), Integration.last_synced_at < requested_at),
                or_(
                    Integration.fleet_message_id.is_(None),
                    Integration.fleet_message_id == message_id,
                    Integration.fleet_started_at < now - CLAIM_TTL,
                ),
            )
            .values(fleet_message_id=message_id, fleet_started_at=now)
            .returning(Integration.id)
        ).first()
        if claimed is not None:
            return None
        last = s.scalar(select(Integration.last_synced_at).where(Integration.id == integration_id))
    return "synced_since_requested" if last is not None and last >= requested_at else "syncing_elsewhere"


def release_fleet_sync(sessions: sessionmaker[Session], integration_id: int, message_id: str) -> None:
    """Drop this message's claim (after its sync, a failure, or a deferral: a deferred copy claims again)."""
    with sessions.begin() as s:
        s.execute(
            update(Integration)
            .where(Integration.id == integration_id, Integration.fleet_message_id == message_id)
            .values(fleet_message_id=None, fleet_started_at=None)
            .execution_options(synchronize_session=False)
        )


def schedule_due(
    sessions: sessionmaker[Session], broker: dramatiq.Broker, now: dt.datetime, interval_hours: float
) -> list[int]:
    """Queue this tick's share of the integrations due for their periodic sync; returns their ids."""
    interval = dt.timedelta(hours=interval_hours)
    stale = now - interval
    with sessions.begin() as s:
        total = int(s.scalar(select(func.count()).select_from(Integration).where(*_eligible())) or 0)
        share = math.ceil(total * SPREAD_FACTOR / max(1.0, interval.total_seconds() / 60))
        if not total:
            return []
        due = (
            select(Integration.id)
            .where(
                *_eligible(),
                # Never synced: due an interval after connecting (its first sync is the connect's own, and the
                # outbox sweep re-sends that one if the broker lost it), so a new connection is not synced twice.
                func.coalesce(Integration.last_synced_at, Integration.created_at) < stale,
                or_(Integration.fleet_queued_at.is_(None), Integration.fleet_queued_at < stale),
            )
            .order_by(func.coalesce(Integration.last_synced_at, Integration.created_at).asc(), Integration.id)
            .limit(share)
        )
        # Skip rows another scheduler is claiming (PostgreSQL); the guard in the UPDATE re-checks anyway.
        if s.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list(s.scalars(due))
        if not ids:
            return []
        s.execute(update(Integration).where(Integration.id.in_(ids)).values(fleet_queued_at=now))
    try:
        _publish(broker, ids, now)
    except Exception:
        with sessions.begin() as s:  # not queued after all: due again at the next tick
            s.execute(update(Integration).where(Integration.id.in_(ids)).values(fleet_queued_at=None))
        raise
    log.info("fleet.scheduled", count=len(ids), fleet=total, interval_hours=interval_hours)
    return ids


def publish_sync_all(sessions: sessionmaker[Session], broker: dramatiq.Broker, requested_at: dt.datetime) -> int:
    """Queue a fleet sync of every active integration not needing re-auth; returns how many."""
    started = time.perf_counter()

    def ids() -> Iterator[int]:
        last = 0
        while True:
            with sessions.begin() as s:
                page = list(
                    s.scalars(
                        select(Integration.id)
                        .where(*_eligible(), Integration.id > last)
                        .order_by(Integration.id)
                        .limit(PAGE)
                    )
                )
                if page:
                    # The scheduler's tick leaves them alone while they are queued.
                    s.execute(update(Integration).where(Integration.id.in_(page)).values(fleet_queued_at=utcnow()))
            yield from page
            if len(page) < PAGE:
                return
            last = page[-1]

    count = _publish(broker, ids(), requested_at)
    log.info("sync_all.published", count=count, duration_ms=round((time.perf_counter() - started) * 1000, 2))
    return count


def _publish(broker: dramatiq.Broker, ids: Iterator[int] | list[int], requested_at: dt.datetime) -> int:
    asked = requested_at.isoformat()

    def messages() -> Iterator[tuple[dramatiq.Message[Any], int | None]]:
        for integration_id in ids:
            yield build_message(FLEET_SYNC, integration_id, requested_at=asked), None

    return publish_many(broker, messages())
