"""Serving `/metrics` on METRICS_PORT: one process's registry, or a worker supervisor's children added up.

The worker with `--processes N` uses prometheus_client's multiprocess mode rather than an endpoint per
process: one scrape target per host whatever N is (compose and Prometheus need not know N), and counters
of a child that exited stay counted. The supervisor makes a fresh directory per start, gives it to the
children as PROMETHEUS_MULTIPROC_DIR (before they import prometheus_client), serves their sum, marks an
exited child dead and removes the directory when it stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client import multiprocess as mp

from common.config import Settings
from common.errors import ConfigError
from common.logging import get_logger

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

log = get_logger("integrations.metrics")


def serve(settings: Settings, service: str, registry: CollectorRegistry = REGISTRY) -> WSGIServer | None:
    """Serve `registry` on METRICS_PORT in a daemon thread; None when METRICS_PORT is unset."""
    if not settings.metrics_port:
        return None
    try:
        server, _thread = start_http_server(settings.metrics_port, settings.metrics_host, registry)
    except OSError as exc:
        raise ConfigError(f"METRICS_PORT {settings.metrics_port} cannot be served: {exc.strerror or exc}") from None
    log.info("metrics.serving", service=service, host=settings.metrics_host, port=settings.metrics_port)
    return server


@contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A fresh directory for the children's metric files, removed afterwards."""
    path = tempfile.mkdtemp(prefix="integrations-metrics-")
    log.info("metrics.multiprocess_dir", path=path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def serve_children(settings: Settings, path: str) -> WSGIServer | None:
    """Serve the sum of the metric files the children write under `path`."""
    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return serve(settings, "worker", registry)


def child_exited(path: str, pid: int) -> None:
    """Drop an exited child's live gauges (its counters stay summed)."""
    mp.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def child_env(path: str) -> dict[str, str]:
    """The environment of a child: writes metrics under `path`, and serves none itself."""
    env = {k: v for k, v in os.environ.items() if k != "METRICS_PORT"}
    env[MULTIPROC_ENV] = path
    return env
