"""Test helpers for the notifier: a real SMTP server (aiosmtpd), the notifier consuming RabbitMQ, polling."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, TypeVar

import dramatiq
from aiosmtpd.controller import Controller

from common.bootstrap import Container, bootstrap
from common.broker import make_broker
from common.config import Settings
from common.tasks import NOTIFY_QUEUE
from services.notifier.actors import declare_actors
from tests.support.net import free_port

T = TypeVar("T")
LINK = re.compile(r"https?://\S+/integrations/\d+/reconnect\?token=\S+")


@dataclass
class Mailbox:
    """What the SMTP server received, parsed."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        msg = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def reconnect_link(msg: EmailMessage) -> str:
    found = LINK.search(text_part(msg))
    assert found, text_part(msg)
    return found.group(0)


@contextmanager
def smtp_server(port: int | None = None) -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd), collecting what it receives."""
    box = Mailbox()
    port = port or free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@dataclass
class Notifier:
    """The notifier's actors consuming the run's RabbitMQ vhost, in this process."""

    container: Container
    broker: dramatiq.Broker
    worker: dramatiq.Worker

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every notification message, retries included, has been processed."""
        self.broker.join(NOTIFY_QUEUE, timeout=int(timeout * 1000))
        self.worker.join()


@contextmanager
def running_notifier(settings: Settings) -> Iterator[Notifier]:
    """A broker on `settings.broker_url`, a container on it, and the notifier consuming its queue."""
    broker = make_broker(settings.broker_url)
    broker.flush(NOTIFY_QUEUE)  # nothing left over from an earlier test
    container = bootstrap(settings, broker=broker, configure_logs=False, pool_size=10)
    declare_actors(broker, container)
    worker = dramatiq.Worker(broker, queues={NOTIFY_QUEUE}, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        yield Notifier(container, broker, worker)
    finally:
        worker.stop()
        broker.flush(NOTIFY_QUEUE)
        broker.close()
        container.close()
