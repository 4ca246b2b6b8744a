"""`create_app(container)`: the Starlette application of the HTTP API."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from common.bootstrap import Container
from common.signing import Signer
from services.api import admin_routes, health_routes, integrations_routes, oauth_routes
from services.api.accept import AcceptRoute
from services.api.amqp_async import AsyncPublisher
from services.api.async_accept import AsyncWorkCheck
from services.api.errors import EXCEPTION_HANDLERS
from services.api.front import ApiApp
from services.api.metrics import ApiMetrics, serve_metrics
from services.api.pages import content_security_policy
from services.api.publishing import BrokerGateway, api_broker_url
from services.api.rate_limit import RateLimiter
from services.api.schemas import openapi_document
from services.api.shedding import InFlight
from services.api.state import ApiState
from services.api.web import web_routes

MAX_BODY_BYTES = 64 * 1024
# Optional routes contributed by another module (reconnect links from emails); see _plugin_routes.
PLUGIN_MODULES = ("services.api.reconnect",)


def create_app(
    container: Container,
    *,
    publish_timeout_seconds: float = 5.0,
    publish_threads: int = 4,
    max_body_bytes: int = MAX_BODY_BYTES,
    async_accept: bool = True,
) -> Starlette:
    """The API on `container` (built by `common.bootstrap.bootstrap(settings, broker=...)`).

    The container's broker is used for publishing; give it a URL tuned by `api_broker_url` so an
    unreachable broker fails fast. The app does not close the container or the broker.
    On PostgreSQL with RabbitMQ (and `async_accept`), POST sync/refresh take the async path
    (`services.api.async_accept`, `services.api.amqp_async`); otherwise they run in threads.
    """
    metrics = ApiMetrics()
    gateway = BrokerGateway(
        container.broker,
        timeout_seconds=publish_timeout_seconds,
        threads=publish_threads,
        on_failure=metrics.publish_failed,
    )
    state = ApiState(
        container=container,
        gateway=gateway,
        metrics=metrics,
        done_signer=Signer(container.settings.token_encryption_keys.reveal(), "done-page"),
        limiter=RateLimiter(container.settings.api_rate_limit_per_minute, container.settings.api_rate_limit_burst),
        in_flight=InFlight(container.settings.api_max_in_flight),
    )
    if (
        async_accept
        and container.settings.database_url.startswith("postgresql")
        and isinstance(container.broker, RabbitmqBroker)
    ):
        state.work_check = AsyncWorkCheck(container.settings.database_url)
        state.publisher = AsyncPublisher(
            api_broker_url(container.settings.broker_url), container.broker, timeout_seconds=publish_timeout_seconds
        )
    extra_routes, extra_paths = _plugin_routes()
    settings = container.settings

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        port = settings.metrics_port
        stop_metrics = serve_metrics(metrics, settings.api_host, port) if port else None
        try:
            yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            gateway.close()
            if state.publisher is not None:
                await state.publisher.close()
            if state.work_check is not None:
                await state.work_check.close()

    routes: list[BaseRoute] = [
        # Plugins first: a plugin may take over a path (e.g. its own post-callback page).
        *extra_routes,
        *oauth_routes.routes,
        *integrations_routes.routes,
        *admin_routes.routes,
        *health_routes.routes,
        # METRICS_PORT moves /metrics off the public port, to a port the load balancer need not expose.
        *([] if settings.metrics_port else [health_routes.metrics_route]),
        *web_routes(),
    ]
    app = ApiApp(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.front_options = {
        "metrics": metrics,
        "in_flight": state.in_flight,
        "csp": content_security_policy([settings.google_auth_url]),
        "max_bytes": max_body_bytes,
        "accept": AcceptRoute(state) if state.work_check is not None else None,
    }
    app.state.api = state
    app.state.openapi = openapi_document(extra_paths)
    return app


def _plugin_routes() -> tuple[list[BaseRoute], dict[str, Any]]:
    """Routes (and OpenAPI paths) of optional modules that exist: `routes` list, optional `openapi_paths`."""
    routes: list[BaseRoute] = []
    paths: dict[str, Any] = {}
    for name in PLUGIN_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)  # an error inside an existing plugin must surface
        routes += list(getattr(module, "routes", []))
        paths.update(getattr(module, "openapi_paths", {}))
    return routes, paths
