"""ASGI middleware: request body limit, and one canonical log line plus metrics per request."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging import get_logger
from services.api.errors import ApiError, error_response
from services.api.metrics import ApiMetrics, method_label

log = get_logger("integrations.api.http")


class BodyLimit:
    """Reject request bodies over `max_bytes` with a JSON 413, whether announced or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ApiError(413, "payload_too_large", self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"The request body exceeds {self.max_bytes} bytes."

    def _too_large(self) -> Response:
        return error_response(413, "payload_too_large", self._message(), {"Connection": "close"})


class RequestObserver:
    """Counts and times every request by its route template and writes the canonical `http.request` line.

    The path is logged as its template (`/integrations/{id}`), never with its query string, which on
    the OAuth callback carries the authorization code and state; the method as a known one or `OTHER`.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = uuid.uuid4().hex[:16]

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            route, method = _route_template(scope), method_label(scope["method"])
            self.metrics.observe(method, route, status, seconds)
            state = scope.get("state") or {}
            log.info(
                "http.request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
                user_id=state.get("user_id"),
                integration_id=state.get("integration_id"),
            )
            structlog.contextvars.unbind_contextvars("request_id")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
