"""Load shedding: a bound on the work requests in flight in one API process; past it, 503 at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.api.errors import ApiError

RETRY_AFTER_SECONDS = 1
_CODE, _MESSAGE = "overloaded", "The API is at capacity; retry shortly."
# The early refusal (services.api.front) is sent before the layer that adds the usual headers: it carries them.
OVERLOADED_HEADERS = {
    "Retry-After": str(RETRY_AFTER_SECONDS),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def overloaded() -> tuple[str, str]:
    """The error code and message of a refusal past the bound."""
    return _CODE, _MESSAGE


class InFlight:
    """At most `limit` work requests (database check + confirmed publish) at a time, on the event loop only.

    Queueing past the bound would only make every caller wait (seconds at 2x overload); a 503 with
    Retry-After tells the excess to come back, and the requests taken stay fast. `services.api.front`
    refuses early (before any other work) while `full()`; `slot()` stays the bound.
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
