"""Message names, queues and senders: how any process publishes work without importing the worker."""

from __future__ import annotations

from typing import Any

import dramatiq

SYNC_QUEUE = "sync"
REFRESH_QUEUE = "refresh"
NOTIFY_QUEUE = "notifications"
QUEUES = (SYNC_QUEUE, REFRESH_QUEUE, NOTIFY_QUEUE)

SYNC_INTEGRATION = "sync_integration"
INTEGRATION_CONNECTED = "integration_connected"
REFRESH_INTEGRATION = "refresh_integration"
REFRESH_ALL = "refresh_all"
NOTIFY_INCIDENT_OPENED = "notify_incident_opened"
NOTIFY_INCIDENT_CLOSED = "notify_incident_closed"
NOTIFY_SIGN_IN = "notify_sign_in"

ACTOR_QUEUES = {
    SYNC_INTEGRATION: SYNC_QUEUE,
    INTEGRATION_CONNECTED: SYNC_QUEUE,
    REFRESH_INTEGRATION: REFRESH_QUEUE,
    REFRESH_ALL: REFRESH_QUEUE,
    NOTIFY_INCIDENT_OPENED: NOTIFY_QUEUE,
    NOTIFY_INCIDENT_CLOSED: NOTIFY_QUEUE,
    NOTIFY_SIGN_IN: NOTIFY_QUEUE,
}


def build_message(actor_name: str, *args: Any, **options: Any) -> dramatiq.Message[Any]:
    """A message for a named actor; arguments are ids and plain values only, never a token."""
    return dramatiq.Message(
        queue_name=ACTOR_QUEUES[actor_name], actor_name=actor_name, args=args, kwargs={}, options=options
    )


def send(broker: dramatiq.Broker, actor_name: str, *args: Any, delay_ms: int | None = None, **options: Any) -> str:
    """Publish one message (publisher-confirmed on RabbitMQ) and return its message id."""
    message = build_message(actor_name, *args, **options)
    broker.enqueue(message, delay=delay_ms)
    return message.message_id
