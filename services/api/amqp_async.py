"""Publishing on the event loop: one long-lived AMQP connection per process, streamed publisher confirms.

pika's `AsyncioConnection` runs on the API's own loop, so a publish is a frame written and a future
awaited, with no thread hop; RabbitMQ's acks (single or `multiple`) resolve the futures of their
delivery tags. The message is the one Dramatiq's `RabbitmqBroker.enqueue` sends (same queue, body,
properties, `mandatory`, enqueue hooks), and each queue is declared as Dramatiq declares it (with its
delay and dead-letter queues) once per connection, so a Dramatiq worker consumes it unchanged.

A broker that is down or silent gives `PublishFailed` within `timeout_seconds`; the connection is then
dropped, and the next publish connects again: the API recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from common.logging import get_logger
from services.api.publishing import PublishFailed

log = get_logger("integrations.api.publish")


class AsyncPublisher:
    """Confirmed publishes of Dramatiq messages to RabbitMQ from the event loop (one per process)."""

    def __init__(self, url: str, broker: RabbitmqBroker, *, timeout_seconds: float = 5.0) -> None:
        self._params = pika.URLParameters(url.split(";")[0])
        self._broker = broker
        self.timeout_seconds = timeout_seconds
        self._channel: Channel | None = None
        self._connection: AsyncioConnection | None = None
        self._opening: asyncio.Future[Channel] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._next_tag = 1
        self._declared: set[str] = set()

    async def send(self, message: dramatiq.Message[Any]) -> None:
        """Publish `message` and return once RabbitMQ confirmed it; PublishFailed otherwise."""
        try:
            async with asyncio.timeout(self.timeout_seconds):  # no task per publish, unlike wait_for
                await self._publish(message)
        except TimeoutError:
            self._drop("timeout")
            raise PublishFailed(f"the message broker did not answer within {self.timeout_seconds:g}s") from None
        except pika.exceptions.AMQPError as exc:  # the channel closed under us: nothing is known to be queued
            self._drop(type(exc).__name__)
            raise PublishFailed(f"the message broker is unavailable: {type(exc).__name__}") from None

    async def close(self) -> None:
        self._drop("shutdown")

    async def _publish(self, message: dramatiq.Message[Any]) -> None:
        channel = await self._open()
        await self._declare(channel, message.queue_name)
        if (
            self._channel is None or self._channel is not channel
        ):  # replaced while declaring: its delivery tags count from 1 again
            raise PublishFailed("the message broker connection was reset; try again")
        self._broker.emit_before("enqueue", message, None)
        channel.basic_publish(
            exchange="",
            routing_key=message.queue_name,
            body=message.encode(),
            properties=pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority")),
            mandatory=True,
        )
        # Registered once the frame is out (basic_publish raised nothing): this channel's next delivery tag.
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[self._next_tag] = confirmed
        self._next_tag += 1
        await confirmed
        self._broker.emit_after("enqueue", message, None)

    async def _open(self) -> Channel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_future()
            self._connect(self._opening)
        return await asyncio.shield(self._opening)

    def _connect(self, ready: asyncio.Future[Channel]) -> None:
        conn: list[AsyncioConnection] = []

        def lost(reason: str) -> None:
            # Only this connection's loss: a late callback of an old one must not drop its successor.
            if conn and self._connection is conn[0]:
                self._drop(reason)

        def opened(connection: AsyncioConnection) -> None:
            connection.channel(on_open_callback=channel_open)

        def channel_open(channel: Channel) -> None:
            channel.add_on_close_callback(lambda _ch, reason: lost(f"channel closed: {reason}"))
            channel.add_on_return_callback(lambda *_: lost("message returned (unroutable)"))
            channel.confirm_delivery(ack_nack_callback=self._confirmed, callback=lambda _f: confirming(channel))

        def confirming(channel: Channel) -> None:
            self._channel, self._next_tag, self._declared = channel, 1, set()
            if not ready.done():
                ready.set_result(channel)

        conn.append(
            AsyncioConnection(
                self._params,
                on_open_callback=opened,
                on_open_error_callback=lambda _c, error: lost(f"connect: {type(error).__name__}"),
                on_close_callback=lambda _c, reason: lost(f"connection closed: {reason}"),
                custom_ioloop=asyncio.get_running_loop(),
            )
        )
        self._connection = conn[0]

    async def _declare(self, channel: Channel, queue: str) -> None:
        if queue in self._declared:
            return
        arguments = self._broker._build_queue_arguments(queue)  # type: ignore[no-untyped-call]  # the worker's own
        await _call(lambda cb: channel.queue_declare(queue, durable=True, arguments=arguments, callback=cb))
        await _call(lambda cb: channel.queue_declare(dq_name(queue), durable=True, arguments=arguments, callback=cb))
        xq_args = {"x-message-ttl": DEAD_MESSAGE_TTL}
        await _call(lambda cb: channel.queue_declare(xq_name(queue), durable=True, arguments=xq_args, callback=cb))
        self._declared.add(queue)

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        tags = [t for t in self._pending if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            future = self._pending.pop(tag, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(None)
            else:
                future.set_exception(PublishFailed("the message broker refused the message (nack)"))

    def _drop(self, reason: str) -> None:
        """Fail what waits and forget the connection: the next publish opens a new one."""
        pending, self._pending = self._pending, {}
        opening, self._opening = self._opening, None
        connection, self._connection, self._channel = self._connection, None, None
        error = PublishFailed(f"the message broker is unavailable: {reason}")
        for future in [*pending.values(), *([opening] if opening is not None else [])]:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a waiter that timed out must not log "never retrieved"
        if connection is not None and not (connection.is_closed or connection.is_closing):
            with contextlib.suppress(pika.exceptions.AMQPError):  # still opening: pika may refuse to close it
                connection.close()
        if pending or opening is not None:
            log.warning("publish.failed", actor="async", reason=reason)


async def _call(start: Callable[[Callable[[Any], None]], Any]) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finished(_frame: Any) -> None:
        if not done.done():
            done.set_result(None)

    start(finished)
    await done
