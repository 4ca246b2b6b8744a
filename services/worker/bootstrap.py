"""Worker bootstrap: the broker first, then the actors, then the container they run with."""

from __future__ import annotations

import dramatiq

from common.bootstrap import Container, bootstrap
from common.broker import make_broker
from common.config import Settings, load_settings
from services.worker import runtime

DEFAULT_THREADS = 8


def init_worker(
    settings: Settings | None = None,
    broker: dramatiq.Broker | None = None,
    *,
    threads: int = DEFAULT_THREADS,
    configure_logs: bool = True,
) -> Container:
    """Build the broker (unless given), declare the actors on it and make the container current.

    The broker is set as Dramatiq's global broker before the actors module is imported, so its
    decorators never create a default RabbitMQ broker. Opens no connection: pika and the database
    connect on first use.
    """
    settings = settings or load_settings()
    if broker is None:
        broker = make_broker(settings.broker_url)
    else:
        dramatiq.set_broker(broker)
    from services.worker import actors  # imported only once the broker is set

    actors.declare_on(broker)
    # One connection per worker thread, plus headroom for the lock-holding refresh transaction.
    pool_size = max(10, threads + 4)
    container = bootstrap(settings, broker=broker, configure_logs=configure_logs, pool_size=pool_size)
    runtime.set_container(container)
    return container
