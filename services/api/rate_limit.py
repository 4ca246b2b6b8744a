"""Per-key token buckets for the endpoints that create work (sync, refresh, connect), in one API process."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from starlette.requests import Request

from services.api.errors import ApiError
from services.api.state import api_state

MAX_KEYS = 10_000


class RateLimiter:
    """`burst` requests at once, then `per_minute` a minute, per key; `per_minute=0` turns it off.

    Used on the event loop only, so without a lock. The table holds at most `max_keys` buckets: a bucket
    that has refilled is the same as none and is dropped first; past the cap the least recently used goes.
    """

    def __init__(
        self, per_minute: int, burst: int, *, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: Hashable) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self._forget_full(now)
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def _forget_full(self, now: float) -> None:
        # Least recently used first: stop at the first bucket that has not refilled yet.
        while self._buckets:
            tokens, at = next(iter(self._buckets.values()))
            if tokens + (now - at) * self.rate < self.burst:
                return
            self._buckets.popitem(last=False)


def limit_work(request: Request, user_id: int) -> None:
    """429 with Retry-After when the caller's key is over API_RATE_LIMIT_PER_MINUTE for work requests."""
    limit_key(api_state(request).limiter, user_id)


def limit_key(limiter: RateLimiter, user_id: int) -> None:
    """`limit_work` on the limiter itself (for the ASGI fast path, which has no Request)."""
    wait = limiter.wait(user_id)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many sync, refresh or connect requests for this API key; retry in {seconds} s.",
            {"Retry-After": str(seconds)},
        )
