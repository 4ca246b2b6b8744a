"""Publishing from the API: broker I/O on a small dedicated thread pool, bounded by a timeout.

pika's BlockingConnection blocks, and Dramatiq's RabbitmqBroker keeps one connection per thread, so
every publish runs on one of a few threads of our own (a few long-lived AMQP connections) and the
event loop only awaits the result. A broker that is down or hanging gives `PublishFailed` within
`timeout_seconds`; the failed thread drops its connection so the next publish reconnects, which is
how the API recovers without a restart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from common.bootstrap import broker_publisher
from common.broker_check import describe
from common.errors import IntegrationsError
from common.events import Event
from common.logging import get_logger
from common.tasks import send

T = TypeVar("T")
log = get_logger("integrations.api.publish")

# Fail fast: the API answers 503 within seconds instead of waiting for pika's reconnect loop.
_FAST_FAIL = {"connection_attempts": "1", "retry_delay": "0"}
_SHORT_TIMEOUTS = {"socket_timeout": "3", "stack_timeout": "4", "blocked_connection_timeout": "5"}


class PublishFailed(IntegrationsError):
    """The broker could not take the message in time; nothing is known to be queued."""


def api_broker_url(url: str) -> str:
    """BROKER_URL tuned for the API: one connection attempt and short socket timeouts (kept if set)."""
    if not url.startswith(("amqp://", "amqps://")):
        return url
    return ";".join(_tune(part) for part in url.split(";"))


def _tune(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query = {**_SHORT_TIMEOUTS, **query, **_FAST_FAIL}
    return urlunsplit(parts._replace(query=urlencode(query)))


class BrokerGateway:
    """Sends messages and domain events to the broker without blocking the event loop."""

    def __init__(
        self,
        broker: dramatiq.Broker | None,
        *,
        timeout_seconds: float = 5.0,
        threads: int = 4,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.broker = broker
        self.timeout_seconds = timeout_seconds
        self._on_failure = on_failure or (lambda _actor: None)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="amqp-publish")

    async def send(self, actor_name: str, *args: Any, message_id: str | None = None) -> str:
        """Publish one message (confirmed by RabbitMQ) and return its id; PublishFailed otherwise."""
        broker = self._require_broker(actor_name)
        return await self._run(actor_name, lambda: send(broker, actor_name, *args, message_id=message_id))

    async def publish_events(self, events: Sequence[Event]) -> None:
        """Publish domain events (incident opened/closed) to the notifier."""
        if not events:
            return
        broker = self._require_broker("events")
        publish = broker_publisher(broker)
        await self._run("events", lambda: publish(events))

    async def ping(self) -> None:
        """Raise PublishFailed unless the broker answers on a publishing connection."""
        broker = self._require_broker("ping")
        if isinstance(broker, RabbitmqBroker):
            await self._run("ping", lambda: _ping(broker), count=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _require_broker(self, what: str) -> dramatiq.Broker:
        if self.broker is None:
            self._on_failure(what)
            raise PublishFailed("no message broker is configured")
        return self.broker

    async def _run(self, what: str, fn: Callable[[], T], *, count: bool = True) -> T:
        try:
            future = self._pool.submit(self._guarded, fn)
        except RuntimeError:  # the pool is shut down: the app is stopping
            self._failed(what, "shutdown", count)
            raise PublishFailed("the API is shutting down") from None
        try:
            with anyio.fail_after(self.timeout_seconds):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()  # a call still queued behind stuck threads must not publish after our 503
            self._failed(what, "timeout", count)
            raise PublishFailed(f"the message broker did not answer within {self.timeout_seconds:g}s") from None
        except Exception as exc:  # any broker error means the message is not queued
            cause = describe(exc).cause
            self._failed(what, cause, count)
            raise PublishFailed(f"the message broker is unavailable: {cause}") from None

    def _guarded(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception:
            _drop_connection(self.broker)
            raise

    def _failed(self, what: str, reason: str, count: bool) -> None:
        if count:
            self._on_failure(what)
        log.warning("broker.ping.failed" if what == "ping" else "publish.failed", actor=what, reason=reason)


def _ping(broker: RabbitmqBroker) -> None:
    try:
        broker.connection.process_data_events(time_limit=0)
    except Exception:  # a stale connection: reconnect once before calling the broker down
        _drop_connection(broker)
        broker.connection.process_data_events(time_limit=0)


def _drop_connection(broker: dramatiq.Broker | None) -> None:
    """Forget this thread's connection so the next call opens a fresh one."""
    if not isinstance(broker, RabbitmqBroker):
        return
    try:
        del broker.connection
    except Exception:  # noqa: S110 - the connection is dead already; dropping it is all we need
        pass
