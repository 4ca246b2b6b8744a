"""What every long-running service process does alike: refuse the in-process broker, stop on a signal."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from common.broker_check import wait_for_broker
from common.config import MEMORY_BROKER, Settings
from common.database_check import wait_for_database


def require_rabbitmq(settings: Settings, service: str) -> bool:
    """False (after saying why on stderr) when BROKER_URL is the in-process broker, which only `make run` can use."""
    if settings.broker_url != MEMORY_BROKER:
        return True
    print(f"error: the {service} needs RabbitMQ: set BROKER_URL=amqp://user:pass@host:5672/vhost", file=sys.stderr)
    return False


def dependencies_ready(settings: Settings, service: str, stop: threading.Event) -> int | None:
    """Wait for the database and RabbitMQ: None to go on; an exit code when one refused us (2, said on stderr,
    naming the server's reason) or `stop` came first (0)."""
    for wait, url in ((wait_for_database, settings.database_url), (wait_for_broker, settings.broker_url)):
        problem = wait(url, service, stop)
        if problem is not None:
            print(f"error: the {service} cannot start: {problem.reason}", file=sys.stderr)
            return 2
        if stop.is_set():
            return 0
    return None


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the process finishes its running work, then exits."""
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
