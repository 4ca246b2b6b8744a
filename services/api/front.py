"""The API's one ASGI layer in front of Starlette: shedding, the request line and metrics, headers, body limit.

One layer instead of four middlewares, outside Starlette's own (`ApiApp.build_middleware_stack`), so a
request pays for one `send` wrapper and one `receive` wrapper. The work routes (`accept.AcceptRoute`) are
answered here without the router; every other request goes on to Starlette. In order:

- while the in-flight bound is reached, a work request (POST under /integrations/) gets 503 at once, with
  no request line (under overload a line per refusal would be more load; `InFlight.shed` counts them);
- every other request is counted and timed by its route template and writes the canonical `http.request`
  line: the path as its template (`/integrations/{id}`), never the query string (the OAuth callback's
  carries the code), the method as a known one or `OTHER`; its answer carries `X-Request-Id`;
- every answer carries `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` (a handler's own
  Cache-Control wins), and a `text/html` one the Content-Security-Policy;
- a request body over `max_bytes` is a JSON 413, whether announced (at once) or streamed (when read).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging import get_logger
from services.api.accept import AcceptRoute
from services.api.errors import ApiError, error_response
from services.api.metrics import ApiMetrics, method_label
from services.api.shedding import OVERLOADED_HEADERS, InFlight, overloaded

log = get_logger("integrations.api.http")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")
_REPLACED = frozenset({b"x-content-type-options"})
_REPLACED_ON_HTML = frozenset({b"x-content-type-options", b"content-security-policy"})


class Front:
    """See the module's docstring; `accept` is None where the work routes take the thread path."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ApiMetrics,
        in_flight: InFlight,
        csp: str,
        max_bytes: int,
        accept: AcceptRoute | None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.in_flight = in_flight
        self.csp = (b"content-security-policy", csp.encode())
        self.max_bytes = max_bytes
        self.accept = accept
        self._overloaded = error_response(503, *overloaded(), OVERLOADED_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight.full() and scope["method"] == "POST" and scope["path"].startswith("/integrations/"):
            self.in_flight.shed += 1
            await self._overloaded(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = secrets.token_hex(8)
        status = 500
        route = "unmatched"

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = self._headers(list(message.get("headers") or ()), request_id)
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            work = self.accept.match(scope) if self.accept is not None else None
            length = _content_length(scope)
            if length is not None and length > self.max_bytes:
                await self._too_large()(scope, receive, answer)
            elif work is not None and self.accept is not None:
                route = f"/integrations/{{id}}/{work[1]}"
                await self.accept(scope, receive, answer, *work)
            else:
                await self.app(scope, self._limited(receive), answer)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope, route)
            method = method_label(scope["method"])
            self.metrics.observe(method, route, status, seconds)
            state: dict[str, Any] = scope.get("state") or {}
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

    def _headers(self, given: list[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
        html = any(k == b"content-type" and v.lower().startswith(b"text/html") for k, v in given)
        replaced = _REPLACED_ON_HTML if html else _REPLACED
        headers = [(k, v) for k, v in given if k not in replaced]
        headers.append(_NOSNIFF)
        if not any(k == b"cache-control" for k, _ in headers):
            headers.append(_NO_STORE)
        if html:
            headers.append(self.csp)
        headers.append((b"x-request-id", request_id.encode()))
        return headers

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ApiError(413, "payload_too_large", self._message())
            return message

        return limited

    def _message(self) -> str:
        return f"The request body exceeds {self.max_bytes} bytes."

    def _too_large(self) -> ASGIApp:
        return error_response(413, "payload_too_large", self._message(), {"Connection": "close"})


class ApiApp(Starlette):
    """Starlette with `Front` outside its whole middleware stack (error and exception middleware included)."""

    front_options: dict[str, Any]

    def build_middleware_stack(self) -> ASGIApp:
        return Front(super().build_middleware_stack(), **self.front_options)


def _route_template(scope: Scope, default: str) -> str:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else default


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
