"""Google's per-minute quotas as the fake enforces them: per API, a sliding 60 s window, 429 past it.

Not thread-safe by itself: FakeGoogle guards it with its lock. Every call's time is recorded per API
so tests can check the busiest 60 s window a client produced.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import deque
from typing import Any

from services.fake_google.faults import Fault

WINDOW = 60.0
# The fake's endpoints, by the quota they count against (as Google's API names).
QUOTA_OF = {
    "accounts": "account_management",
    "locations": "business_information",
    "performance": "performance",
    "token": "token",
}
_METRIC = {
    "account_management": "mybusinessaccountmanagement.googleapis.com/default_requests",
    "business_information": "mybusinessbusinessinformation.googleapis.com/default_requests",
    "performance": "businessprofileperformance.googleapis.com/default_requests",
    "token": "oauth2.googleapis.com/default_requests",
}


def exhausted_body(api: str) -> str:
    """Google's 429 body, word for word in shape."""
    metric = _METRIC[api]
    message = (
        f"Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service "
        f"'{metric.split('/')[0]}' for consumer 'project_number:000000000000'."
    )
    return json.dumps({"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}})


class Quotas:
    """Per-API budgets (requests per minute; None: unlimited), the calls seen and the ones refused."""

    def __init__(self, qpm: int | None = None, token_qpm: int | None = None) -> None:
        self.qpm = qpm
        self.token_qpm = token_qpm
        self._accepted: dict[str, deque[float]] = {}
        self._calls: dict[str, list[float]] = {}
        self._refused: dict[str, list[float]] = {}

    def budget(self, api: str) -> int | None:
        return self.token_qpm if api == "token" else self.qpm

    def check(self, endpoint: str, now: float) -> Fault | None:
        """Record one call to `endpoint` at `now`; a 429 fault when its API's last 60 s are full."""
        api = QUOTA_OF.get(endpoint)
        if api is None:
            return None
        self._calls.setdefault(api, []).append(now)
        accepted = self._accepted.setdefault(api, deque())
        while accepted and accepted[0] <= now - WINDOW:
            accepted.popleft()
        budget = self.budget(api)
        if budget is not None and len(accepted) >= budget:
            self._refused.setdefault(api, []).append(now)
            return Fault(429, None, exhausted_body(api))
        accepted.append(now)
        return None

    def call_times(self, api: str) -> list[float]:
        return list(self._calls.get(api, []))

    def stats(self) -> dict[str, Any]:
        """Per API: calls, 429s, the most calls in any 60 s window; and the budgets."""
        apis = {}
        for api, times in self._calls.items():
            apis[api] = {
                "calls": len(times),
                "throttled": len(self._refused.get(api, [])),
                "last_throttled_at": max(self._refused.get(api, [0.0])) or None,
                "max_in_window": max_in_window(times),
            }
        return {"qpm": self.qpm, "token_qpm": self.token_qpm, "apis": apis}


def max_in_window(times: list[float], window: float = WINDOW) -> int:
    """The most of `times` (ascending) inside any half-open window of `window` seconds."""
    best = 0
    for i, start in enumerate(times):
        best = max(best, bisect_right(times, start + window - 1e-9, lo=i) - i)
    return best
