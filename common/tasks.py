"""Message names, queues and senders: how any process publishes work without importing the worker."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq

SYNC_QUEUE = "sync"
REFRESH_QUEUE = "refresh"
NOTIFY_QUEUE = "notifications"
# Background fleet syncs: their own queue, consumed by a bounded number of worker threads, so the
# user's syncs (SYNC_QUEUE) never wait behind them.
FLEET_QUEUE = "fleet"
QUEUES = (SYNC_QUEUE, REFRESH_QUEUE, NOTIFY_QUEUE, FLEET_QUEUE)

SYNC_INTEGRATION = "sync_integration"
INTEGRATION_CONNECTED = "integration_connected"
REFRESH_INTEGRATION = "refresh_integration"
REFRESH_ALL = "refresh_all"
FLEET_SYNC = "fleet_sync_integration"
SYNC_ALL = "sync_all"
NOTIFY_INCIDENT_OPENED = "notify_incident_opened"
NOTIFY_INCIDENT_CLOSED = "notify_incident_closed"
NOTIFY_SIGN_IN = "notify_sign_in"

ACTOR_QUEUES = {
    SYNC_INTEGRATION: SYNC_QUEUE,
    INTEGRATION_CONNECTED: SYNC_QUEUE,
    REFRESH_INTEGRATION: REFRESH_QUEUE,
    REFRESH_ALL: REFRESH_QUEUE,
    FLEET_SYNC: FLEET_QUEUE,
    SYNC_ALL: REFRESH_QUEUE,
    NOTIFY_INCIDENT_OPENED: NOTIFY_QUEUE,
    NOTIFY_INCIDENT_CLOSED: NOTIFY_QUEUE,
    NOTIFY_SIGN_IN: NOTIFY_QUEUE,
}


def build_message(actor_name: str, *args: Any, message_id: str | None = None, **options: Any) -> dramatiq.Message[Any]:
    """A message for a named actor; arguments are ids and plain values only, never a token."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=ACTOR_QUEUES[actor_name], actor_name=actor_name, args=args, kwargs={}, options=options
    )
    return message.copy(message_id=message_id) if message_id else message


def new_message_id() -> str:
    """A message id as Dramatiq makes them, for a message whose id is recorded before it is published."""
    return str(uuid.uuid4())


def send(
    broker: dramatiq.Broker,
    actor_name: str,
    *args: Any,
    delay_ms: int | None = None,
    message_id: str | None = None,
    **options: Any,
) -> str:
    """Publish one message (publisher-confirmed on RabbitMQ) and return its message id."""
    message = build_message(actor_name, *args, message_id=message_id, **options)
    broker.enqueue(message, delay=delay_ms)
    return message.message_id
