"""Load shedding: a bound on the work requests in flight in one API process; past it, 503 at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.api.errors import ApiError

RETRY_AFTER_SECONDS = 1


class InFlight:
    """At most `limit` work requests (database check + confirmed publish) at a time, on the event loop only.

    Queueing past the bound would only make every caller wait (seconds at 2x overload); a 503 with
    Retry-After tells the excess to come back, and the requests taken stay fast.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0
        self.shed = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.current >= self.limit:
            self.shed += 1
            raise ApiError(
                503,
                "overloaded",
                "The API is at capacity; retry shortly.",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.current += 1
        try:
            yield
        finally:
            self.current -= 1
