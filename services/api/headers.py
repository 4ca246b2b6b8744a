"""One middleware for the headers every answer carries: no sniffing, no caching, and a CSP on HTML pages."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecurityHeaders:
    """`X-Content-Type-Options: nosniff` and `Cache-Control: no-store` on every answer (a handler's own
    Cache-Control wins), and `Content-Security-Policy: <csp>` on every `text/html` one."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers.setdefault("Cache-Control", "no-store")
                if headers.get("content-type", "").lower().startswith("text/html"):
                    headers["Content-Security-Policy"] = self.csp
            await send(message)

        await self.app(scope, receive, with_headers)
