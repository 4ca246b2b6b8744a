"""The quota governor on real PostgreSQL (and SQLite), against the fake Google over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from structlog.testing import capture_logs

from common.db import make_engine
from common.errors import QuotaExceeded
from common.models import GoogleQuota, Incident, Integration
from common.quota import PERFORMANCE, QuotaGovernor, fleet_lane
from common.tasks import SYNC_INTEGRATION, send
from services.fake_google.quota import max_in_window
from tests.conftest import make_settings
from tests.support.flows import connect, load, new_email
from tests.support.polling import wait_for
from tests.support.worker import running_worker

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_share_one_budget(pg_url, google):
    qpm, calls = 600, 20  # 10 a second for the two together
    cmd = [sys.executable, "-m", "tests.support.quota_load", pg_url, google.url, str(qpm), str(calls)]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.wait(60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    times = google.fake.call_times(PERFORMANCE)
    assert len(times) == 2 * calls
    # 10 per second at most (+1 for a call whose start is delayed on the way): without the shared
    # governor the 40 calls arrive within a fraction of a second.
    assert max_in_window(times, 1.0) <= qpm // 60 + 1


def test_sqlite_governor_paces_and_a_429_slows_it_down(sqlite_url):
    slept: list[float] = []
    now = [1000.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    engine = make_engine(sqlite_url)
    gov = QuotaGovernor(engine, {PERFORMANCE: 60}, sleep=sleep, clock=lambda: now[0])
    for _ in range(3):
        gov.acquire(PERFORMANCE)
    paced = list(slept)
    gov.throttled(PERFORMANCE)
    with engine.connect() as conn:
        row = conn.execute(select(GoogleQuota).where(GoogleQuota.api == PERFORMANCE)).one()
    engine.dispose()

    assert paced[0] == pytest.approx(60 / (60 * 0.97), rel=1e-3)  # one slot's wait: 60/QPM, with the margin
    assert len(paced) == 2, "the first call goes at once, the next two each wait a slot"
    assert row.interval == pytest.approx(row.base_interval * 1.5)
    assert row.throttled_total == 1
    usage = QuotaGovernor(make_engine(sqlite_url), {PERFORMANCE: 60}, clock=lambda: now[0]).usage()
    assert [(u.used_last_minute, u.throttled_total) for u in usage if u.api == PERFORMANCE] == [(3, 1)]


def test_users_book_up_to_30_s_ahead_and_fleet_work_waits_behind_them(sqlite_url):
    now, advancing = [2000.0], [False]

    def sleep(seconds: float) -> None:
        if advancing[0]:  # while False: many concurrent callers, each booked a slot and went to sleep
            now[0] += seconds

    engine = make_engine(sqlite_url)
    gov = QuotaGovernor(engine, {PERFORMANCE: 6}, sleep=sleep, clock=lambda: now[0])
    base = 60 / (6 * 0.97)
    booked = 0
    with pytest.raises(QuotaExceeded) as raised:
        for _ in range(10):
            gov.acquire(PERFORMANCE)
            booked += 1
    assert booked == 3, "slots at +0, +10.3 and +20.6 s; the next (+30.9 s) is past USER_MAX_WAIT"
    assert raised.value.api == PERFORMANCE and raised.value.reason == "quota_busy"
    assert raised.value.retry_after == pytest.approx(3 * base)

    advancing[0] = True
    with fleet_lane():
        gov.acquire(PERFORMANCE)
    engine.dispose()
    assert now[0] >= 2000 + 3 * base, "the fleet call went after every slot a user had booked"


def test_a_429_defers_the_sync_marks_nothing_and_spends_no_retry(pg_url, amqp_url, google):
    settings = make_settings(pg_url, google, broker_url=amqp_url)
    deferred_before = REGISTRY.get_sample_value("integrations_syncs_total", {"outcome": "deferred"}) or 0.0
    with running_worker(settings, threads=2) as w, capture_logs() as logs:
        email = new_email("q")
        iid = connect(w.container, google_email=email)
        google.fake.fail_next("performance", 429, count=2, retry_after=1)

        # One retry allowed: before, the second 429 used it up and the integration was marked 'error'.
        send(w.broker, SYNC_INTEGRATION, iid, max_retries=1, min_backoff=50, max_backoff=200)

        row = wait_for(lambda: (r := load(w.container, iid)).last_sync_status and r, timeout=60, what="a sync result")
    assert row.last_sync_status == "success" and row.error_kind is None and not row.needs_reauth
    with w.container.sessions() as s:
        assert s.scalars(select(Incident).where(Incident.integration_id == iid)).all() == []
    deferred = [e for e in logs if e["event"] == "sync.deferred" and e.get("integration_id") == iid]
    assert [(e["api"], e["reason"]) for e in deferred] == [(PERFORMANCE, "rate_limited")] * 2
    assert REGISTRY.get_sample_value("integrations_syncs_total", {"outcome": "deferred"}) == deferred_before + 2
    assert not [e for e in logs if e["event"] in ("retry.scheduled", "sync.failed", "retries.exhausted")]
    assert all(p.exception is None for p in w.recorder.finished(SYNC_INTEGRATION))


def test_a_429_on_the_token_endpoint_is_pacing_too(pg_url, amqp_url, google):
    settings = make_settings(pg_url, google, broker_url=amqp_url)
    with running_worker(settings, threads=2) as w, capture_logs() as logs:
        iid = connect(w.container, google_email=new_email("t"))
        with w.container.sessions.begin() as s:
            s.get(Integration, iid).token_expires_at = None  # the sync must refresh first
        google.fake.fail_next("token", 429, count=1, retry_after=1)

        send(w.broker, SYNC_INTEGRATION, iid, max_retries=0)

        row = wait_for(lambda: (r := load(w.container, iid)).last_sync_status and r, timeout=60, what="a sync result")
    assert row.last_sync_status == "success" and row.error_kind is None
    assert [(e["api"], e["reason"]) for e in logs if e["event"] == "sync.deferred"] == [("token", "rate_limited")]
    assert not [e for e in logs if e["event"] in ("token.refresh.failed", "sync.failed", "retries.exhausted")]


def test_wait_for_slot_holds_no_connection(pg_url):
    """A caller sleeping until its slot has given its connection back: the pool is free meanwhile."""
    engine = make_engine(pg_url, pool_size=1)
    checked_out: list[int] = []

    def sleep(seconds: float) -> None:
        checked_out.append(engine.pool.checkedout())  # type: ignore[attr-defined]
        time.sleep(min(seconds, 0.01))

    gov = QuotaGovernor(engine, {PERFORMANCE: 600}, sleep=sleep)
    for _ in range(3):
        gov.acquire(PERFORMANCE)
    engine.dispose()
    assert checked_out and set(checked_out) == {0}
