"""Prometheus metrics of one API instance: requests by route template, latency, publishes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import start_http_server
from prometheus_client.metrics_core import Metric

# The client picks the method (h11 takes any 16 KB token): every label and log field holds one of these.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"


def method_label(method: str) -> str:
    """The request method when it is a known one, otherwise `OTHER`."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


class ApiMetrics:
    """A registry of its own per app, so several apps (tests) never clash on global names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "integrations_api_requests_total",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "integrations_api_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ("method", "route"),
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "integrations_api_publish_failures_total",
            "Messages the broker could not take (the client got a 503), by actor.",
            ("actor",),
            registry=self.registry,
        )
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request; `method` and `route` must already be bounded (method_label, a route template)."""
        series = self._series.get((method, route, status))
        if series is None:  # labels() takes a lock and builds a key per call: look each series up once
            series = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._series[(method, route, status)] = series
        series[0].inc()
        series[1].observe(seconds)

    def publish_failed(self, actor: str) -> None:
        self.publish_failures.labels(actor).inc()

    def render(self) -> tuple[bytes, str]:
        # Then the process's shared families (common.metrics): the API's own Google calls (code exchange, revoke).
        return generate_latest(self.registry) + generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class _Both:
    """The API's own registry and the process's shared one, as one collector for the METRICS_PORT server."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()


def serve_metrics(metrics: ApiMetrics, host: str, port: int) -> Callable[[], None]:
    """Serve `/metrics` of `metrics` (and the shared families) on its own port, in a thread of its own; returns
    the function that stops it."""
    server, thread = start_http_server(port, host, registry=_Both(metrics.registry, REGISTRY))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
