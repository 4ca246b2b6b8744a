"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import anyio
import anyio.to_thread
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.api.errors import error_body
from services.api.publishing import PublishFailed
from services.api.state import ApiState, api_state

DB_CHECK_SECONDS = 3.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = api_state(request)
    broker, broker_cause = await _broker(state)
    report = {"database": await _database(state), "broker": broker}
    down = [name for name, value in report.items() if value != "ok"]
    if not down:
        return JSONResponse(report)
    because = f" (broker: {broker_cause})" if broker_cause else ""
    message = f"Not ready: {' and '.join(down)} unavailable{because}."
    return JSONResponse({**report, **error_body("not_ready", message)}, status_code=503)


async def _database(state: ApiState) -> str:
    engine = state.container.engine

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        with anyio.fail_after(DB_CHECK_SECONDS):
            await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)
    except Exception:  # any failure, a timeout included, means not ready
        return "error"
    return "ok"


async def _broker(state: ApiState) -> tuple[str, str]:
    """The broker's state, and RabbitMQ's reason when it is not ok (no host or credentials in it)."""
    if state.gateway.broker is None:
        return "not_configured", ""
    try:
        await state.gateway.ping()
    except PublishFailed as exc:
        return "error", str(exc).removeprefix("the message broker is unavailable: ")
    return "ok", ""


async def metrics(request: Request) -> Response:
    # Rendering walks every series: in a worker thread, so a large registry never stalls other requests.
    body, content_type = await anyio.to_thread.run_sync(api_state(request).metrics.render)
    return Response(body, media_type=content_type)


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


routes: list[BaseRoute] = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
# On the public port unless METRICS_PORT moves it to a port of its own.
metrics_route = Route("/metrics", metrics, methods=["GET"])
