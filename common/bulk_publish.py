"""Publishing many messages fast: one AMQP transaction per batch instead of one confirm per message."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name

BATCH = 1000


def publish_many(broker: dramatiq.Broker, items: Iterable[tuple[dramatiq.Message[Any], int | None]]) -> int:
    """Publish (message, delay_ms) pairs; when this returns, RabbitMQ holds every one of them durably.

    On RabbitMQ each batch is one transaction (tx.select/tx.commit) on a connection of its own, which
    keeps publisher confirms' guarantee at a fraction of the round trips. Other brokers enqueue one by one.
    """
    if not isinstance(broker, RabbitmqBroker):
        n = 0
        for message, delay in items:
            broker.enqueue(message, delay=delay)
            n += 1
        return n
    declared: set[str] = set()
    params = broker.parameters[0] if isinstance(broker.parameters, list) else broker.parameters
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.tx_select()
        n = pending = 0
        props = pika.BasicProperties(delivery_mode=2)
        for message, delay in items:
            if message.queue_name not in declared:
                broker.declare_queue(message.queue_name, ensure=True)
                declared.add(message.queue_name)
            routing_key = message.queue_name
            if delay:
                routing_key = dq_name(message.queue_name)
                message = message.copy(queue_name=routing_key, options={"eta": int(time.time() * 1000) + delay})
            channel.basic_publish(exchange="", routing_key=routing_key, body=message.encode(), properties=props)
            n += 1
            pending += 1
            if pending >= BATCH:
                channel.tx_commit()
                pending = 0
        if pending:
            channel.tx_commit()
        return n
    finally:
        if connection.is_open:
            connection.close()
