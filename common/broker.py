"""The Dramatiq broker: RabbitMQ (pika, publisher confirms) or the in-process broker, set in one place."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware

from common.config import MEMORY_BROKER
from common.tasks import QUEUES

MIN_BACKOFF_MS = 2_000
# Delayed messages are held unacked by the consumer; stay well under RabbitMQ's 30-minute consumer timeout.
MAX_BACKOFF_MS = 10 * 60_000
MAX_RETRIES = 8
TIME_LIMIT_MS = 5 * 60_000
# periodiq drops a periodic message older than this when it is processed (its default is 30 s): a day
# plus margin, so a queue backlog or the scheduler's start-up catch-up (up to 24 h late) is not lost.
PERIODIC_SKIP_DELAY_S = 26 * 3600


def middleware(extra: list[Middleware] | None = None) -> list[Middleware]:
    """The same middleware list in every process (worker, api, scheduler, notifier, CLI)."""
    from common.worker_context import LogContext

    return [
        AgeLimit(),
        TimeLimit(time_limit=TIME_LIMIT_MS),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
        CurrentMessage(),
        LogContext(),
        PeriodiqMiddleware(skip_delay=PERIODIC_SKIP_DELAY_S),
        *(extra or []),
    ]


def make_broker(url: str, *, extra_middleware: list[Middleware] | None = None) -> dramatiq.Broker:
    """Build the broker for `url`, make it Dramatiq's global broker and declare our queues.

    Call before any actor module is imported: otherwise Dramatiq silently creates its own
    RabbitMQ broker on localhost.
    """
    mw = middleware(extra_middleware)
    broker: dramatiq.Broker
    if url == MEMORY_BROKER:
        broker = StubBroker(middleware=mw)
    else:
        broker = RabbitmqBroker(url=url, confirm_delivery=True, middleware=mw)
    dramatiq.set_broker(broker)
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker
