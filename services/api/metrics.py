"""Prometheus metrics of one API instance: requests by route template, latency, publishes."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest


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

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def publish_failed(self, actor: str) -> None:
        self.publish_failures.labels(actor).inc()

    def render(self) -> tuple[bytes, str]:
        # Then the process's shared families (common.metrics): the API's own Google calls (code exchange, revoke).
        return generate_latest(self.registry) + generate_latest(REGISTRY), CONTENT_TYPE_LATEST
