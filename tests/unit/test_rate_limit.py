from __future__ import annotations

import pytest

from services.api.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_one_request_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.wait("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("k") == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.wait("k") == pytest.approx(0.5), "a refused request costs nothing"
    clock.now += 0.5
    assert limiter.wait("k") == 0.0
    assert limiter.wait("other") == 0.0, "each key has its own bucket"


def test_an_idle_key_refills_up_to_its_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=2, clock=clock)
    assert limiter.wait("k") == 0.0 and limiter.wait("k") == 0.0
    clock.now += 3600
    assert [limiter.wait("k") for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.wait("k") == pytest.approx(10.0)


def test_the_table_is_bounded_and_forgets_idle_keys_first() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, max_keys=100, clock=clock)
    for n in range(10_000):
        limiter.wait(n)
        assert len(limiter) <= 100
    limiter.wait("busy")
    limiter.wait("busy")
    clock.now += 5  # every bucket but "busy"'s last use is full again: nothing to remember about them
    limiter.wait("new")
    assert len(limiter) <= 3
    assert limiter.wait("busy") == 0.0


def test_zero_per_minute_turns_the_limit_off() -> None:
    limiter = RateLimiter(per_minute=0, burst=1, clock=Clock())
    assert all(limiter.wait("k") == 0.0 for _ in range(1_000)) and len(limiter) == 0
