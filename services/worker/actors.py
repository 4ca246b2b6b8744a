"""The worker's Dramatiq actors. Import only after the broker is set (see bootstrap.init_worker).

Arguments are ids and plain values; every actor is idempotent (refreshes re-check under the lock,
insights are upserted), so a redelivered message does no harm.
"""

from __future__ import annotations

import datetime as dt

import dramatiq
from dramatiq.middleware import CurrentMessage

from common import sync_requests
from common.broker import MAX_RETRIES
from common.fleet_sync import claim_fleet_sync, publish_sync_all, release_fleet_sync
from common.logging import get_logger
from common.metrics import REFRESH_ALL_JOB, SYNC_ALL_JOB, record_run_completed
from common.models import utcnow
from common.quota import fleet_lane
from common.scheduling import claim_scheduled_message
from common.sync_service import sync_integration as run_sync
from common.tasks import (
    FLEET_QUEUE,
    FLEET_SYNC,
    INTEGRATION_CONNECTED,
    REFRESH_ALL,
    REFRESH_INTEGRATION,
    REFRESH_QUEUE,
    SYNC_ALL,
    SYNC_INTEGRATION,
    SYNC_QUEUE,
)
from services.worker import policy, runtime
from services.worker.fleet import publish_refresh_all

# Every limit stays under RabbitMQ's 30-minute consumer timeout for an unacked message.
SYNC_TIME_LIMIT_MS = 10 * 60_000
REFRESH_TIME_LIMIT_MS = 2 * 60_000
REFRESH_ALL_TIME_LIMIT_MS = 25 * 60_000
FLEET_PRIORITY = 10  # within one worker, a user's message goes before fleet ones (lower runs first)

log = get_logger("integrations.worker")


@dramatiq.actor(
    actor_name=SYNC_INTEGRATION,
    queue_name=SYNC_QUEUE,
    throws=policy.THROWS,
    max_retries=MAX_RETRIES,
    time_limit=SYNC_TIME_LIMIT_MS,
)
def sync_integration(integration_id: int) -> None:
    """Refresh the token if it expires within the margin, then sync the integration's insights."""
    message = CurrentMessage.get_current_message()
    if message is not None:
        # Started: a sync asked for from now on queues one more (common/sync_requests.py).
        sync_requests.release(runtime.container().sessions, integration_id, message.message_id)
    policy.run("sync", integration_id, lambda: run_sync(runtime.container(), integration_id))


@dramatiq.actor(
    actor_name=FLEET_SYNC,
    queue_name=FLEET_QUEUE,
    priority=FLEET_PRIORITY,
    throws=policy.THROWS,
    max_retries=MAX_RETRIES,
    time_limit=SYNC_TIME_LIMIT_MS,
)
def fleet_sync_integration(integration_id: int) -> None:
    """The periodic or sync-all sync of one integration, paced as background work; skipped when it was
    synced since the message's `requested_at` (a redelivery or a repeated fan-out does no second sync)."""
    c = runtime.container()
    asked = _requested_at() or utcnow()
    message = CurrentMessage.get_current_message()
    message_id = message.message_id if message is not None else f"direct-{integration_id}-{asked.isoformat()}"
    skipped = claim_fleet_sync(c.sessions, integration_id, message_id, asked)
    if skipped is not None:
        log.info("sync.skipped", integration_id=integration_id, reason=skipped)
        return
    try:
        with fleet_lane():
            policy.run("sync", integration_id, lambda: run_sync(c, integration_id))
    finally:
        release_fleet_sync(c.sessions, integration_id, message_id)


@dramatiq.actor(actor_name=SYNC_ALL, queue_name=REFRESH_QUEUE, max_retries=3, time_limit=REFRESH_ALL_TIME_LIMIT_MS)
def sync_all() -> None:
    """Queue a fleet sync of every active integration not needing re-auth (make sync-all).

    The fan-out's time (`requested_at`, the same on a redelivery) goes with each message, so a
    redelivered or repeated sync-all syncs nothing twice.
    """
    c = runtime.container()
    if not claim_scheduled_message(c.sessions, SYNC_ALL):
        return
    assert c.broker is not None
    publish_sync_all(c.sessions, c.broker, _requested_at() or utcnow())
    record_run_completed(SYNC_ALL_JOB)


@dramatiq.actor(
    actor_name=INTEGRATION_CONNECTED,
    queue_name=SYNC_QUEUE,
    throws=policy.THROWS,
    max_retries=MAX_RETRIES,
    time_limit=SYNC_TIME_LIMIT_MS,
)
def integration_connected(integration_id: int) -> None:
    """A newly (re)connected integration: its initial sync."""
    policy.run("sync", integration_id, lambda: run_sync(runtime.container(), integration_id))


@dramatiq.actor(
    actor_name=REFRESH_INTEGRATION,
    queue_name=REFRESH_QUEUE,
    throws=policy.THROWS,
    max_retries=MAX_RETRIES,
    time_limit=REFRESH_TIME_LIMIT_MS,
)
def refresh_integration(integration_id: int, within_seconds: int) -> None:
    """Refresh the integration's token when it expires within `within_seconds`.

    The message's `requested_at` option (ISO 8601; by default the message's own time) is when the refresh was
    asked for: a refresh stored since then counts, so a redelivered message, a repeated fan-out or a double
    click makes no second provider call.
    """
    asked = _requested_at()
    policy.run(
        "token.refresh",
        integration_id,
        lambda: runtime.container().tokens.refresh(integration_id, within_seconds, requested_at=asked),
    )


@dramatiq.actor(actor_name=REFRESH_ALL, queue_name=REFRESH_QUEUE, max_retries=3, time_limit=REFRESH_ALL_TIME_LIMIT_MS)
def refresh_all(within_seconds: int | None = None) -> None:
    """Publish one refresh message per active OAuth2 integration expiring within the window.

    A redelivery publishes again, which is harmless: each refresh re-checks under the lock whether it was
    done since this fan-out's time.
    """
    c = runtime.container()
    if not claim_scheduled_message(c.sessions, REFRESH_ALL):
        return  # a duplicate fire of a scheduled run that another message claimed (logged)
    within = c.settings.nightly_refresh_within_seconds if within_seconds is None else within_seconds
    # The fan-out's own time, the same on a redelivery: a refresh already done for it is not done again.
    asked = _requested_at()
    publish_refresh_all(c, within, requested_at=asked.isoformat() if asked else None)
    record_run_completed(REFRESH_ALL_JOB)


def _requested_at() -> dt.datetime | None:
    message = CurrentMessage.get_current_message()
    if message is None:
        return None
    given = message.options.get("requested_at")
    if given:
        return dt.datetime.fromisoformat(given)
    return dt.datetime.fromtimestamp(message.message_timestamp / 1000, dt.UTC)


ACTORS = (sync_integration, integration_connected, refresh_integration, refresh_all, fleet_sync_integration, sync_all)


def declare_on(broker: dramatiq.Broker) -> None:
    """Declare the actors on `broker` (a no-op for the broker they were decorated with)."""
    for actor in ACTORS:
        if actor.broker is not broker:
            actor.broker = broker
            broker.declare_actor(actor)
