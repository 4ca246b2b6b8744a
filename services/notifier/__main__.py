"""`python -m services.notifier`: consume the `notifications` queue and send the emails.

SIGTERM/SIGINT stop taking messages and let the running ones finish; unfinished ones are redelivered.
"""

from __future__ import annotations

import os
import sys

import dramatiq

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.config import load_settings
from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.metrics_server import serve as serve_metrics
from common.process import dependencies_ready, require_rabbitmq, stop_on_signals
from common.tasks import NOTIFY_QUEUE
from services.notifier.actors import declare_actors

THREADS = 2
SHUTDOWN_TIMEOUT_MS = 30_000


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not require_rabbitmq(settings, "notifier"):
        return 2
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger("integrations.notifier")
    stop = stop_on_signals()
    code = dependencies_ready(settings, "notifier", stop)
    if code is not None:
        return code
    broker = make_broker(settings.broker_url)
    # Two connections per thread: the incident lock's and the work's.
    container = bootstrap(settings, broker=broker, configure_logs=False, pool_size=2 * THREADS + 2)
    try:
        notifier = declare_actors(broker, container)
        serve_metrics(settings, "notifier")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    broker.emit_after("process_boot")  # starts the TimeLimit watchdog
    worker = dramatiq.Worker(broker, queues={NOTIFY_QUEUE}, worker_threads=THREADS)
    worker.start()
    log.info("notifier.started", pid=os.getpid(), mailer=repr(notifier.mailer), ops_email=bool(settings.ops_email))
    while not stop.wait(0.5):
        pass
    log.info("notifier.stopping", pid=os.getpid())
    worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
    broker.close()
    container.close()
    log.info("notifier.stopped", pid=os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
