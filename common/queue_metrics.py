"""Broker gauges: messages ready and unacked per queue, and dead letters, from RabbitMQ's management API.

Why the management API and not a passive `queue.declare` over AMQP: the declare answers the ready count
only. Dramatiq consumers prefetch, so a busy queue shows few ready messages and many unacked ones, and
retries wait unacked in the `.DQ` queue: without the unacked count the depth would read as near empty.
Nothing is consumed either way. Dead letters are the `<queue>.XQ` queues Dramatiq declares, reported
under their queue's name. The management API updates its figures every few seconds (RabbitMQ's
statistics interval), which is finer than a scrape interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import httpx
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.logging import get_logger

MANAGEMENT_PORT = 15672
DEAD_SUFFIX = ".XQ"
CACHE_SECONDS = 5.0

log = get_logger("integrations.metrics")


@dataclass(frozen=True)
class Management:
    """Where RabbitMQ's management API is, with which credentials (kept out of the URL, so out of logs)."""

    base_url: str
    vhost: str
    auth: tuple[str, str] = field(repr=False)


def management_api(broker_url: str, given: str = "") -> Management:
    """RABBITMQ_MANAGEMENT_URL (`given`) when set, else BROKER_URL's host on port 15672, its credentials, its vhost."""
    broker = urlsplit(broker_url)
    vhost = unquote(broker.path[1:]) if len(broker.path) > 1 else "/"
    if given:
        parts = urlsplit(given)
    else:
        scheme = "https" if broker.scheme == "amqps" else "http"
        creds = broker.netloc.rsplit("@", 1)[0] + "@" if "@" in broker.netloc else ""
        parts = urlsplit(f"{scheme}://{creds}{broker.hostname}:{MANAGEMENT_PORT}")
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    host = parts.hostname or "127.0.0.1"
    base = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "") + parts.path.rstrip("/")
    return Management(base, vhost, auth)


def queue_depths(api: Management, http: httpx.Client) -> list[tuple[str, str, int]]:
    """(queue, kind, count) for every queue of the vhost: ready and unacked, and dead (from `<queue>.XQ`)."""
    resp = http.get(
        f"{api.base_url}/api/queues/{quote(api.vhost, safe='')}",
        params={"columns": "name,messages,messages_ready,messages_unacknowledged"},
        auth=api.auth,
    )
    resp.raise_for_status()
    out: list[tuple[str, str, int]] = []
    for q in resp.json():
        name = str(q["name"])
        if name.endswith(DEAD_SUFFIX):
            out.append((name[: -len(DEAD_SUFFIX)], "dead", int(q.get("messages", 0) or 0)))
            continue
        out.append((name, "ready", int(q.get("messages_ready", 0) or 0)))
        out.append((name, "unacked", int(q.get("messages_unacknowledged", 0) or 0)))
    return sorted(out)


class QueueCollector(Collector):
    """Prometheus collector of `integrations_queue_messages{queue,kind}`, cached for `cache_seconds`."""

    def __init__(self, broker_url: str, management: str = "", cache_seconds: float = CACHE_SECONDS) -> None:
        self._api = management_api(broker_url, management)
        self._http = httpx.Client(timeout=5.0)
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[tuple[str, str, int]]] | None = None

    def close(self) -> None:
        self._http.close()

    def depths(self) -> list[tuple[str, str, int]]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self._cached = (now, queue_depths(self._api, self._http))
            return self._cached[1]

    def describe(self) -> Iterator[Metric]:
        # Without it the registry would call collect() on registration: a query before the first scrape.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            depths = self.depths()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("metrics.queues_failed", error=type(exc).__name__)
            return
        family = GaugeMetricFamily(
            "integrations_queue_messages",
            "Messages per queue: ready, unacked, dead (dead letters).",
            labels=["queue", "kind"],
        )
        for queue, kind, count in depths:
            family.add_metric([queue, kind], count)
        yield family
