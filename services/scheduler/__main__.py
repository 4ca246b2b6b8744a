"""`python -m services.scheduler`: the nightly refresh-all scheduler and the notification outbox sweep.

Run one (a second one is harmless: duplicate fires are dropped by the worker). SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import os
import sys

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.config import load_settings
from common.cron import CronSchedule
from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from common.process import dependencies_ready, require_rabbitmq, stop_on_signals
from services.scheduler.metrics import serve_scheduler_metrics
from services.scheduler.scheduler import NightlyScheduler, declare_periodic_stub


def main() -> int:
    try:
        settings = load_settings()
        schedule = CronSchedule.parse(settings.nightly_refresh_cron, settings.scheduler_timezone)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not require_rabbitmq(settings, "scheduler"):
        return 2
    configure_logging(settings.log_level, settings.log_format)
    stop = stop_on_signals()
    code = dependencies_ready(settings, "scheduler", stop)
    if code is not None:
        return code
    broker = make_broker(settings.broker_url)
    container = bootstrap(settings, broker=broker, configure_logs=False, pool_size=2)
    declare_periodic_stub(broker, schedule)
    try:
        serve_scheduler_metrics(container)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    get_logger("integrations.scheduler").info("scheduler.process", pid=os.getpid())
    try:
        NightlyScheduler(
            container.sessions, broker, schedule, fleet_interval_hours=container.settings.sync_interval_hours
        ).run(stop)
    finally:
        broker.close()
        container.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
