"""The Dramatiq broker: RabbitMQ (pika, publisher confirms) or the in-process broker, set in one place."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed
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


class _CoalescedAckConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, its acks handed to the connection's thread in batches.

    Dramatiq asks the consumer's connection for one thread-safe callback per ack: a write to its wake-up
    pipe, a wake-up and a flush each. Here the acks that worker threads post while one such callback is
    pending join it, so a busy consumer wakes once for many acks and sends them in one write; each is still
    its own `basic.ack` (no `multiple`, since messages finish out of order). Ack-after-processing is
    unchanged: a message whose ack was not sent when the connection dropped is redelivered, as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._acks: list[int] = []
        self._acks_lock = threading.Lock()

    def ack(self, message: Any) -> None:
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            self.logger.warning("Failed to ack message: not in known tags.")
            return
        with self._acks_lock:
            self._acks.append(message._tag)
            if len(self._acks) > 1:
                return  # the pending callback will send it
        try:
            self.connection.add_callback_threadsafe(self._send_acks)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            with self._acks_lock:
                self._acks.clear()  # unacked: redelivered to whoever consumes next
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _send_acks(self) -> None:
        with self._acks_lock:
            tags, self._acks = self._acks, []
        # All but the last are queued on the channel's core (pika's BlockingChannel flushes the socket after
        # each of its calls); the last one's flush sends them together.
        queue = getattr(self.channel, "_impl", self.channel)
        for tag in tags[:-1]:
            queue.basic_ack(tag)
        self.channel.basic_ack(tags[-1])


class _Broker(RabbitmqBroker):
    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _CoalescedAckConsumer


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
        broker = _Broker(url=url, confirm_delivery=True, middleware=mw)
    dramatiq.set_broker(broker)
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker
