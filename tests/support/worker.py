"""An in-process Dramatiq worker on real RabbitMQ for integration tests, plus polling helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dramatiq
from dramatiq.middleware import Middleware

from common.bootstrap import Container
from common.broker import make_broker
from common.config import Settings
from common.tasks import FLEET_QUEUE, QUEUES, REFRESH_QUEUE, SYNC_QUEUE
from services.worker import runtime
from services.worker.bootstrap import init_worker

T = TypeVar("T")


@dataclass(frozen=True)
class Processed:
    message_id: str
    actor: str
    args: tuple[Any, ...]
    options: dict[str, Any]
    exception: str | None


class Recorder(Middleware):
    """Records every message the worker finished (successfully or not), in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done: list[Processed] = []

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        item = Processed(
            message.message_id,
            message.actor_name,
            tuple(message.args),
            dict(message.options),
            type(exception).__name__ if exception else None,
        )
        with self._lock:
            self.done.append(item)

    def finished(self, actor: str | None = None, *, ok: bool | None = None) -> list[Processed]:
        with self._lock:
            items = list(self.done)
        return [p for p in items if (actor is None or p.actor == actor) and (ok is None or (p.exception is None) == ok)]


@dataclass
class RunningWorker:
    container: Container
    broker: dramatiq.Broker
    recorder: Recorder
    worker: dramatiq.Worker
    extra: dict[str, Any] = field(default_factory=dict)


def flush(broker: dramatiq.Broker) -> None:
    """Drop every message of our queues (their delay and dead-letter queues included)."""
    for queue in QUEUES:
        broker.declare_queue(queue, ensure=True)
        broker.flush(queue)  # type: ignore[attr-defined]


@contextmanager
def running_worker(settings: Settings, threads: int = 4, fleet_threads: int = 2) -> Iterator[RunningWorker]:
    """A worker consuming the sync, refresh and fleet queues of `settings.broker_url`, emptied before and after."""
    recorder = Recorder()
    broker = make_broker(settings.broker_url, extra_middleware=[recorder])
    flush(broker)
    container = init_worker(settings, broker, threads=threads, configure_logs=False)
    # A short worker_timeout makes stopping quick; it only bounds how long idle threads block.
    worker = dramatiq.Worker(broker, queues={SYNC_QUEUE, REFRESH_QUEUE}, worker_threads=threads, worker_timeout=100)
    fleet = dramatiq.Worker(broker, queues={FLEET_QUEUE}, worker_threads=fleet_threads, worker_timeout=100)
    worker.start()
    fleet.start()
    try:
        yield RunningWorker(container, broker, recorder, worker, {"fleet": fleet})
    finally:
        fleet.stop(timeout=10_000)
        worker.stop(timeout=10_000)
        flush(broker)
        broker.close()
        container.close()
        runtime.set_container(None)
