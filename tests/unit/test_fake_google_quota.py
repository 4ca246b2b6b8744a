"""The fake enforces Google's per-API per-minute quotas over a sliding 60 s window, answering as Google does."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.fake_google import FakeGoogle, FakeGoogleServer, start_fake_google
from services.fake_google.quota import max_in_window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[FakeGoogleServer]:
    with start_fake_google(fake=FakeGoogle(clock=clock)) as s:
        yield s


def test_past_the_quota_the_api_answers_googles_429_without_retry_after(server: FakeGoogleServer, clock: Clock):
    server.fake.set_quota(3)
    with httpx.Client(base_url=server.url) as http:
        answers = [http.get("/accountmanagement/v1/accounts") for _ in range(4)]
        other_api = http.get("/businessinformation/v1/accounts/1/locations", params={"readMask": "name"})
        clock.now += 59.9
        still = http.get("/accountmanagement/v1/accounts")
        clock.now += 0.2  # the first three calls have left the sliding window
        again = http.get("/accountmanagement/v1/accounts")

    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    refused = answers[3]
    assert "retry-after" not in refused.headers
    error = refused.json()["error"]
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("Quota exceeded for quota metric")
    assert other_api.status_code != 429, "each API has its own quota"
    assert still.status_code == 429
    assert again.status_code == 401
    stats = server.fake.stats()["quota"]["apis"]["account_management"]
    assert stats == {"calls": 6, "throttled": 2, "max_in_window": 5, "last_throttled_at": 1059.9}


def test_the_quota_is_set_and_lifted_over_http(server: FakeGoogleServer):
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/_control/quota", json={"qpm": 1}).status_code == 200
        first, second = (http.get("/accountmanagement/v1/accounts").status_code for _ in range(2))
        assert http.post("/_control/quota", json={"qpm": None}).status_code == 200
        third = http.get("/accountmanagement/v1/accounts").status_code
        assert http.get("/_control/stats").json()["quota"]["qpm"] is None
    assert (first, second, third) == (401, 429, 401)


def test_max_in_window_counts_the_busiest_60_seconds():
    assert max_in_window([]) == 0
    assert max_in_window([0, 30, 59.9, 60, 61, 200]) == 4  # 30, 59.9, 60, 61
    assert max_in_window([0, 0.5, 1.0], window=1.0) == 2
