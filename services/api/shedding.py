"""Load shedding: a bound on the work requests in flight in one API process; past it, 503 at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.errors import ApiError, error_response

RETRY_AFTER_SECONDS = 1
_CODE, _MESSAGE = "overloaded", "The API is at capacity; retry shortly."
_HEADERS = {
    "Retry-After": str(RETRY_AFTER_SECONDS),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class InFlight:
    """At most `limit` work requests (database check + confirmed publish) at a time, on the event loop only.

    Queueing past the bound would only make every caller wait (seconds at 2x overload); a 503 with
    Retry-After tells the excess to come back, and the requests taken stay fast.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0
        self.shed = 0

    def full(self) -> bool:
        return self.current >= self.limit

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.full():
            self.shed += 1
            raise ApiError(503, _CODE, _MESSAGE, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.current += 1
        try:
            yield
        finally:
            self.current -= 1


class ShedWhenFull:
    """The outermost ASGI layer: while the bound is reached, a work request (POST under /integrations/) gets
    the 503 at once, before the other middlewares, so refusing costs next to nothing when it matters most.
    Its headers are the ones SecurityHeaders would add; it writes no request line (under overload a line
    per refusal would be more load): `InFlight.shed` counts the refusals. The route's own `slot()` stays
    the bound; this only makes the refusal cheap."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight
        self._answer = error_response(503, _CODE, _MESSAGE, _HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.in_flight.full()
            and scope["method"] == "POST"
            and scope["path"].startswith("/integrations/")
        ):
            self.in_flight.shed += 1
            await self._answer(scope, receive, send)
            return
        await self.app(scope, receive, send)
