"""Publishing many messages fast: one transaction, or streamed publisher confirms, never a wait per message."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name

BATCH = 1000  # messages between two rounds of socket I/O
WINDOW = 10_000  # messages published but not yet confirmed, at most


class PublishRefused(pika.exceptions.AMQPChannelError):  # type: ignore[misc]  # pika ships no types
    """RabbitMQ refused (nacked) some of the messages."""


def publish_many(broker: dramatiq.Broker, items: Iterable[tuple[dramatiq.Message[Any], int | None]]) -> int:
    """Publish (message, delay_ms) pairs; when this returns, RabbitMQ holds every one of them durably.

    On RabbitMQ, on a connection of its own: up to BATCH messages go in one transaction (one round
    trip; they appear together at the commit). More stream over a channel in confirm mode: RabbitMQ
    acknowledges them in bulk once persisted, at most WINDOW are unconfirmed at a time (memory stays
    flat), and consumers start on the first ones at once. A transaction per batch would stop the
    stream at every commit; the blocking channel's confirms wait for each message. Other brokers
    enqueue one by one.
    """
    if not isinstance(broker, RabbitmqBroker):
        n = 0
        for message, delay in items:
            broker.enqueue(message, delay=delay)
            n += 1
        return n
    declared: set[str] = set()

    def prepared(pairs: Iterable[tuple[dramatiq.Message[Any], int | None]]) -> Iterator[tuple[str, bytes]]:
        for message, delay in pairs:
            if message.queue_name not in declared:
                broker.declare_queue(message.queue_name, ensure=True)
                declared.add(message.queue_name)
            routing_key = message.queue_name
            if delay:
                routing_key = dq_name(message.queue_name)
                message = message.copy(queue_name=routing_key, options={"eta": int(time.time() * 1000) + delay})
            yield routing_key, message.encode()

    pairs = iter(items)
    head = list(itertools.islice(pairs, BATCH))
    params = broker.parameters[0] if isinstance(broker.parameters, list) else broker.parameters
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        # The blocking channel flushes the socket after every publish; its non-blocking core buffers.
        core = channel._impl
        props = pika.BasicProperties(delivery_mode=2)
        if len(head) < BATCH:
            channel.tx_select()
            for routing_key, body in prepared(head):
                core.basic_publish(exchange="", routing_key=routing_key, body=body, properties=props)
            channel.tx_commit()
            return len(head)
        confirms = _Confirms()
        core.confirm_delivery(ack_nack_callback=confirms.on_confirm, callback=confirms.on_selected)
        _pump(connection, channel, lambda: not confirms.selected)
        for routing_key, body in prepared(itertools.chain(head, pairs)):
            core.basic_publish(exchange="", routing_key=routing_key, body=body, properties=props)
            confirms.published += 1
            if confirms.published % BATCH == 0:
                _pump(connection, channel, lambda: confirms.unconfirmed > WINDOW)
        _pump(connection, channel, lambda: confirms.unconfirmed > 0)
        if confirms.nacked:
            raise PublishRefused(f"RabbitMQ refused {confirms.nacked} of {confirms.published} messages")
        return confirms.published
    finally:
        if connection.is_open:
            connection.close()


class _Confirms:
    """Counts the channel's confirmations; delivery tags are 1, 2, 3... in publish order."""

    def __init__(self) -> None:
        self.selected = False
        self.published = 0
        self.confirmed = 0
        self.nacked = 0
        self._floor = 0  # every tag up to here is confirmed
        self._above: set[int] = set()  # tags above the floor confirmed one by one

    @property
    def unconfirmed(self) -> int:
        return self.published - self.confirmed

    def on_selected(self, _frame: object) -> None:
        self.selected = True

    def on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = int(method.delivery_tag)
        if method.multiple:
            newly = max(0, tag - self._floor - sum(1 for t in self._above if t <= tag))
            self._above = {t for t in self._above if t > tag}
            self._floor = max(self._floor, tag)
        else:
            newly = int(tag > self._floor and tag not in self._above)
            if newly:
                self._above.add(tag)
        while self._floor + 1 in self._above:
            self._floor += 1
            self._above.remove(self._floor)
        self.confirmed += newly
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked += newly


def _pump(connection: pika.BlockingConnection, channel: Any, waiting: Callable[[], bool]) -> None:
    """Send what is buffered and take in confirms; go on until `waiting()` is false."""
    connection.process_data_events(time_limit=0)
    while waiting():
        if channel.is_closed:
            raise pika.exceptions.ChannelClosed(0, "the channel closed before every message was confirmed")
        connection.process_data_events(time_limit=0.05)
