"""The worker's actors on real RabbitMQ and PostgreSQL, consumed by an in-process Dramatiq worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text

from common.broker import MAX_BACKOFF_MS
from common.locked_row import APPLICATION_NAME
from common.models import DISCONNECTED, Incident, Insight, Integration
from common.tasks import INTEGRATION_CONNECTED, NOTIFY_QUEUE, REFRESH_INTEGRATION, SYNC_INTEGRATION, send
from services.worker.policy import backoff_ms
from tests.conftest import make_settings
from tests.support.flows import connect, expire_soon, load, new_email
from tests.support.insights import assert_first_sync_stored, first_sync_values, stored_insights
from tests.support.polling import wait_for
from tests.support.worker import RunningWorker, running_worker

FAST = {"min_backoff": 50, "max_backoff": 200}  # message options: quick retries in tests


@pytest.fixture
def w(pg_url: str, amqp_url: str, google) -> Iterator[RunningWorker]:
    with running_worker(make_settings(pg_url, google, broker_url=amqp_url), threads=4) as running:
        yield running


def finished(w: RunningWorker, message_id: str):
    return next((p for p in w.recorder.finished() if p.message_id == message_id), None)


def test_connected_event_runs_the_initial_sync_with_the_fakes_values(w, google):
    email = new_email("g")
    iid = connect(w.container, google_email=email)

    mid = send(w.broker, INTEGRATION_CONNECTED, iid)

    done = wait_for(lambda: finished(w, mid), what="the initial sync")
    assert done.exception is None
    assert_first_sync_stored(stored_insights(w.container.sessions, iid), google.fake, email)
    assert load(w.container, iid).last_sync_status == "success"


def test_sync_with_token_inside_margin_refreshes_exactly_once_then_syncs(w, google):
    email = new_email("g")
    iid = connect(w.container, google_email=email)
    expire_soon(w.container, iid, 120)

    mid = send(w.broker, SYNC_INTEGRATION, iid)

    assert wait_for(lambda: finished(w, mid)).exception is None
    assert google.fake.total_refresh_calls == 1
    assert_first_sync_stored(stored_insights(w.container.sessions, iid), google.fake, email)


def test_100_sync_messages_on_one_integration_make_one_refresh_and_no_duplicates(w, google):
    email = new_email("g")
    iid = connect(w.container, google_email=email)
    expire_soon(w.container, iid, 30)

    ids = {send(w.broker, SYNC_INTEGRATION, iid) for _ in range(100)}

    wait_for(lambda: ids <= {p.message_id for p in w.recorder.finished(SYNC_INTEGRATION)}, 120, "100 syncs")
    assert [p for p in w.recorder.finished() if p.message_id in ids and p.exception] == []
    assert google.fake.total_refresh_calls == 1
    assert google.fake.refresh_calls_for(email) == 1
    with w.container.sessions() as s:
        count = s.scalar(select(func.count()).select_from(Insight).where(Insight.integration_id == iid))
    assert count == len(first_sync_values(google.fake, email))
    assert_first_sync_stored(stored_insights(w.container.sessions, iid), google.fake, email)


def test_401_from_business_profile_forces_one_refresh(w, google):
    email = new_email("g")
    iid = connect(w.container, google_email=email)
    google.fake.expire_access_tokens(email)

    mid = send(w.broker, SYNC_INTEGRATION, iid)

    assert wait_for(lambda: finished(w, mid)).exception is None
    assert google.fake.total_refresh_calls == 1
    assert load(w.container, iid).last_sync_status == "success"


def test_403_forbidden_location_marks_reauth_opens_incident_and_notifies_once(w, google):
    email = new_email("g")
    iid = connect(w.container, google_email=email)
    google.fake.forbid_location(google.fake.layout_for(email).accounts[0].locations[0].name)

    first = send(w.broker, SYNC_INTEGRATION, iid, **FAST)
    assert wait_for(lambda: finished(w, first)).exception == "ReauthRequired"
    second = send(w.broker, SYNC_INTEGRATION, iid, **FAST)
    assert wait_for(lambda: finished(w, second)).exception == "ReauthRequired"

    assert [p.message_id for p in w.recorder.finished(SYNC_INTEGRATION)] == [first, second]  # never retried
    row = load(w.container, iid)
    assert (row.last_sync_status, row.needs_reauth, row.error_kind) == ("error", True, "reauth_required")
    assert "permission" in row.last_sync_message
    with w.container.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Incident).where(Incident.integration_id == iid)) == 1
    ready, _delayed, _dead = w.broker.get_queue_message_counts(NOTIFY_QUEUE)
    assert ready == 1  # one incident_opened message for the notifier, not one per sync


def test_transient_503_is_retried_and_then_synced_without_an_error_state(w, google):
    email = new_email("g")
    iid = connect(w.container, google_email=email)
    google.fake.fail_next("performance", 503, count=2)

    mid = send(w.broker, SYNC_INTEGRATION, iid, **FAST)

    wait_for(lambda: [p for p in w.recorder.finished(SYNC_INTEGRATION, ok=True) if p.message_id == mid], 30, "retry")
    attempts = [p for p in w.recorder.finished(SYNC_INTEGRATION) if p.message_id == mid]
    assert [p.exception for p in attempts] == ["Retry", "Retry", None]
    row = load(w.container, iid)
    assert (row.last_sync_status, row.needs_reauth, row.error_kind, row.last_sync_message) == (
        "success",
        False,
        None,
        None,
    )
    assert_first_sync_stored(stored_insights(w.container.sessions, iid), google.fake, email)


def test_permanently_failing_provider_ends_in_a_transient_error_state(w, google):
    iid = connect(w.container)
    google.fake.fail_ratio("accounts", 503, 1.0)

    mid = send(w.broker, SYNC_INTEGRATION, iid, max_retries=2, **FAST)

    wait_for(lambda: load(w.container, iid).last_sync_status == "error", 30, "the error state")
    wait_for(lambda: len([p for p in w.recorder.finished() if p.message_id == mid]) == 3, 10, "3 attempts")
    row = load(w.container, iid)
    assert (row.needs_reauth, row.error_kind) == (False, "transient")
    assert row.last_sync_message == "Business Profile is unavailable (503)"
    assert google.fake.calls["accounts"] == 3
    _ready, _delayed, dead = w.broker.get_queue_message_counts("sync")
    assert dead == 1  # inspectable in the dead-letter queue


def test_disconnected_or_unknown_integration_is_acked_as_a_no_op(w, google):
    iid = connect(w.container)
    with w.container.sessions.begin() as s:
        s.get(Integration, iid).status = DISCONNECTED

    ids = [send(w.broker, SYNC_INTEGRATION, iid), send(w.broker, SYNC_INTEGRATION, 987654321)]

    done = wait_for(lambda: [finished(w, m) for m in ids] if all(finished(w, m) for m in ids) else None)
    assert [p.exception for p in done] == [None, None]
    assert google.fake.calls.get("accounts", 0) == 0


def test_backoff_grows_honours_retry_after_and_stays_under_the_consumer_timeout():
    assert 100 <= backoff_ms(0, 100, 10_000, None) <= 200
    assert 800 <= backoff_ms(3, 100, 10_000, None) <= 1600
    assert backoff_ms(0, 100, 10_000, retry_after=30) == 30_000
    assert backoff_ms(30, 2_000, 10**9, retry_after=7200) == MAX_BACKOFF_MS < 30 * 60_000


def test_a_database_error_inside_the_refresh_transaction_is_retried_by_the_policy(w, google):
    """The refresh's own connection (common.locked_row) is cut while it holds the lock: a transient failure
    retried with our backoff (dramatiq.Retry), not an unknown exception, and the retry refreshes."""
    email = new_email("g")
    iid = connect(w.container, google_email=email)
    expire_soon(w.container, iid)
    google.fake.set_latency("token", 1500)  # the token call waits while the refresh holds its row lock
    mid = send(w.broker, REFRESH_INTEGRATION, iid, 3600, **FAST)
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = :app AND state = 'idle in transaction'"
    )

    def holding() -> object:
        with w.container.engine.connect() as conn:  # a transaction each: pg_stat_activity is a snapshot per transaction
            return conn.execute(text(waiting), {"app": APPLICATION_NAME}).first()

    try:
        wait_for(holding, 15, "the refresh holding its row lock")
        with w.container.engine.begin() as conn:
            conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM ({waiting}) AS t"), {"app": APPLICATION_NAME})
    finally:
        google.fake.set_latency("token", 0)  # the fake's reset between tests keeps latencies

    wait_for(lambda: any(p.exception is None for p in w.recorder.finished() if p.message_id == mid), 30, "a retry")
    attempts = [p.exception for p in w.recorder.finished() if p.message_id == mid]
    assert attempts[0] == "Retry", attempts
    row = load(w.container, iid)
    assert row.last_refreshed_at is not None and row.last_sync_status != "error"
