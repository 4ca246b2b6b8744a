"""Injected failures, latency and hangs. Not thread-safe by itself: FakeGoogle guards it with its lock."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

ENDPOINTS = frozenset({"auth", "token", "revoke", "accounts", "locations", "performance"})
ANY = "*"


def check_endpoint(endpoint: str) -> str:
    """Return `endpoint` if it names a fake endpoint (or "*"), else raise ValueError."""
    if endpoint != ANY and endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)} or '*'")
    return endpoint


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to answer instead of the real response."""

    status: int
    retry_after: int | None = None
    body: str | None = None


@dataclass(slots=True)
class _RatioRule:
    fault: Fault
    ratio: float
    rng: random.Random


class Faults:
    """Per-endpoint queues of one-shot failures, ratio failures, latency and hangs."""

    def __init__(self) -> None:
        self._next: dict[str, deque[Fault]] = {}
        self._ratio: dict[str, _RatioRule] = {}
        self._hangs: dict[str, deque[float]] = {}
        self.latency_ms: dict[str, float] = {}

    def clear_failures(self) -> None:
        self._next.clear()
        self._ratio.clear()
        self._hangs.clear()

    def reset(self) -> None:
        self.clear_failures()
        self.latency_ms.clear()

    def add_next(self, endpoint: str, fault: Fault, count: int) -> None:
        self._next.setdefault(check_endpoint(endpoint), deque()).extend([fault] * count)

    def set_ratio(self, endpoint: str, fault: Fault, ratio: float, seed: int | None) -> None:
        if ratio <= 0:
            self._ratio.pop(check_endpoint(endpoint), None)
            return
        self._ratio[check_endpoint(endpoint)] = _RatioRule(fault, min(ratio, 1.0), random.Random(seed))

    def add_hang(self, endpoint: str, seconds: float) -> None:
        self._hangs.setdefault(check_endpoint(endpoint), deque()).append(seconds)

    def set_latency(self, endpoint: str, ms: float) -> None:
        if ms <= 0:
            self.latency_ms.pop(check_endpoint(endpoint), None)
        else:
            self.latency_ms[check_endpoint(endpoint)] = float(ms)

    def take(self, endpoint: str) -> tuple[float, Fault | None]:
        """Consume what applies to one call: (seconds to sleep first, fault or None)."""
        # Fast path for the benchmark case where nothing is configured.
        if not (self._next or self._ratio or self._hangs or self.latency_ms):
            return 0.0, None
        latency = self.latency_ms.get(endpoint, self.latency_ms.get(ANY, 0.0))
        delay = latency / 1000.0 + (self._pop(self._hangs, endpoint) or 0.0)
        fault = self._pop(self._next, endpoint)
        if fault is None:
            rule = self._ratio.get(endpoint) or self._ratio.get(ANY)
            if rule is not None and rule.rng.random() < rule.ratio:
                fault = rule.fault
        return delay, fault

    @staticmethod
    def _pop(queues: dict[str, deque[T]], endpoint: str) -> T | None:
        for key in (endpoint, ANY):
            queue = queues.get(key)
            if queue:
                value = queue.popleft()
                if not queue:
                    del queues[key]
                return value
        return None
