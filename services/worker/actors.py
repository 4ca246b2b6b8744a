"""The worker's Dramatiq actors. Import only after the broker is set (see bootstrap.init_worker).

Arguments are ids and plain values; every actor is idempotent (refreshes re-check under the lock,
insights are upserted), so a redelivered message does no harm.
"""

from __future__ import annotations

import dramatiq

from common.broker import MAX_RETRIES
from common.scheduling import claim_scheduled_message
from common.sync_service import sync_integration as run_sync
from common.tasks import (
    INTEGRATION_CONNECTED,
    REFRESH_ALL,
    REFRESH_INTEGRATION,
    REFRESH_QUEUE,
    SYNC_INTEGRATION,
    SYNC_QUEUE,
)
from services.worker import policy, runtime
from services.worker.fleet import publish_refresh_all

# Every limit stays under RabbitMQ's 30-minute consumer timeout for an unacked message.
SYNC_TIME_LIMIT_MS = 10 * 60_000
REFRESH_TIME_LIMIT_MS = 2 * 60_000
REFRESH_ALL_TIME_LIMIT_MS = 25 * 60_000


@dramatiq.actor(
    actor_name=SYNC_INTEGRATION,
    queue_name=SYNC_QUEUE,
    throws=policy.THROWS,
    max_retries=MAX_RETRIES,
    time_limit=SYNC_TIME_LIMIT_MS,
)
def sync_integration(integration_id: int) -> None:
    """Refresh the token if it expires within the margin, then sync the integration's insights."""
    policy.run("sync", integration_id, lambda: run_sync(runtime.container(), integration_id))


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
    """Refresh the integration's token when it expires within `within_seconds`."""
    policy.run(
        "token.refresh", integration_id, lambda: runtime.container().tokens.refresh(integration_id, within_seconds)
    )


@dramatiq.actor(actor_name=REFRESH_ALL, queue_name=REFRESH_QUEUE, max_retries=3, time_limit=REFRESH_ALL_TIME_LIMIT_MS)
def refresh_all(within_seconds: int | None = None) -> None:
    """Publish one refresh message per active OAuth2 integration expiring within the window.

    A redelivery publishes again, which is harmless: each refresh re-checks under the lock.
    """
    c = runtime.container()
    if not claim_scheduled_message(c.sessions, REFRESH_ALL):
        return  # a duplicate fire of a scheduled run that another message claimed (logged)
    within = c.settings.nightly_refresh_within_seconds if within_seconds is None else within_seconds
    publish_refresh_all(c, within)


ACTORS = (sync_integration, integration_connected, refresh_integration, refresh_all)


def declare_on(broker: dramatiq.Broker) -> None:
    """Declare the actors on `broker` (a no-op for the broker they were decorated with)."""
    for actor in ACTORS:
        if actor.broker is not broker:
            actor.broker = broker
            broker.declare_actor(actor)
