"""The scheduler serves the fleet and broker gauges: one per deployment, so the database is asked once a scrape."""

from __future__ import annotations

import datetime as dt
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY

from common.bootstrap import Container
from common.fleet_metrics import FleetCollector
from common.metrics_server import serve
from common.queue_metrics import QueueCollector


def serve_scheduler_metrics(container: Container) -> WSGIServer | None:
    """Serve this process's families plus the fleet and queue gauges on METRICS_PORT (None when unset)."""
    settings = container.settings
    if not settings.metrics_port:
        return None
    # `integrations health` calls an integration stale after 2 x SYNC_INTERVAL_HOURS without a successful sync.
    REGISTRY.register(FleetCollector(container.sessions, dt.timedelta(hours=2 * settings.sync_interval_hours)))
    REGISTRY.register(QueueCollector(settings.broker_url, settings.rabbitmq_management_url.reveal()))
    return serve(settings, "scheduler")
