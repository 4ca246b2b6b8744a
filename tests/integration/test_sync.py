"""common.sync_service on real PostgreSQL (and SQLite) against the fake Google over HTTP."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text

from common.errors import IntegrationInactive, ReauthRequired, TransientProviderError
from common.gbp_client import DAILY_METRICS
from common.google_oauth import MSG_PERMISSION_DENIED
from common.locking import lock_integration
from common.models import DISCONNECTED, Incident, Integration, Location
from common.sync_service import sync_integration, sync_window
from services.api.disconnect import disconnect
from tests.support.concurrency import lock_waiters, run_in_thread
from tests.support.flows import connect, expire_soon, load, new_email
from tests.support.insights import stored_insights, window_values
from tests.support.polling import wait_for

TODAY = dt.date(2024, 3, 15)


def test_first_sync_stores_exactly_the_fakes_values_for_a_90_day_backfill(pg, google):
    email = new_email("g")
    iid = connect(pg, google_email=email)

    result = sync_integration(pg, iid, today=TODAY)

    start, end = sync_window(TODAY, first_sync=True)
    assert (start, end) == (dt.date(2023, 12, 16), dt.date(2024, 3, 14))  # 90 days
    want = window_values(google.fake, email, start, end)
    assert stored_insights(pg.sessions, iid) == want
    assert 0 in want.values()  # Google leaves zero values out; they are stored as 0
    assert (result.locations, result.values) == (2, len(want)) == (2, 2 * len(DAILY_METRICS) * 90)
    row = load(pg, iid)
    assert row.last_sync_status == "success" and row.last_synced_at is not None and row.last_sync_message is None
    with pg.sessions() as s:
        names = set(s.scalars(select(Location.name).where(Location.integration_id == iid)))
    assert names == {loc.name for acc in google.fake.layout_for(email).accounts for loc in acc.locations}


def test_resync_reads_from_3_days_before_the_last_sync_and_creates_no_duplicates(pg, google):
    email = new_email("g")
    iid = connect(pg, google_email=email)
    sync_integration(pg, iid, today=TODAY)
    set_last_synced(pg, iid, dt.datetime(2024, 3, 15, 6, 0, tzinfo=dt.UTC))  # the day TODAY's sync ran
    later = TODAY + dt.timedelta(days=3)

    result = sync_integration(pg, iid, today=later)
    sync_integration(pg, iid, today=later)

    start, end = sync_window(later, first_sync=False, last_synced=dt.date(2024, 3, 15))
    assert (start, end) == (dt.date(2024, 3, 12), dt.date(2024, 3, 17))  # 3 revised days + the new ones
    first = window_values(google.fake, email, *sync_window(TODAY, first_sync=True))
    want = first | window_values(google.fake, email, start, end)
    assert stored_insights(pg.sessions, iid) == want
    assert result.values == 2 * len(DAILY_METRICS) * 6
    with pg.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Location).where(Location.integration_id == iid)) == 2


def test_sync_after_a_long_gap_reads_at_most_the_90_day_backfill():
    today = dt.date(2024, 6, 1)
    assert sync_window(today, first_sync=False, last_synced=dt.date(2023, 1, 1)) == sync_window(today, first_sync=True)
    assert sync_window(today, first_sync=False, last_synced=today) == (dt.date(2024, 5, 29), dt.date(2024, 5, 31))


def set_last_synced(c, iid: int, when: dt.datetime) -> None:
    with c.sessions.begin() as s:
        s.get(Integration, iid).last_synced_at = when


def test_token_inside_the_margin_is_refreshed_once_before_the_sync(pg, google):
    iid = connect(pg)
    expire_soon(pg, iid, 60)

    sync_integration(pg, iid, today=TODAY)

    assert google.fake.total_refresh_calls == 1
    assert load(pg, iid).token_expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)


def test_a_401_forces_one_refresh_and_the_call_is_retried(pg, google):
    email = new_email("g")
    iid = connect(pg, google_email=email)
    google.fake.expire_access_tokens(email)  # stored expiry still looks fine; Google says 401

    result = sync_integration(pg, iid, today=TODAY)

    assert google.fake.total_refresh_calls == 1
    assert result.values == len(window_values(google.fake, email, *sync_window(TODAY, first_sync=True)))
    assert load(pg, iid).last_sync_status == "success"


def test_a_second_401_is_transient_after_exactly_one_forced_refresh(pg, google):
    iid = connect(pg)
    google.fake.fail_next("accounts", 401, count=2)

    with pytest.raises(TransientProviderError) as info:
        sync_integration(pg, iid, today=TODAY)

    assert info.value.reason == "unauthenticated"
    assert google.fake.total_refresh_calls == 1
    row = load(pg, iid)
    assert row.last_sync_status is None and not row.needs_reauth  # state unchanged while retrying


def test_403_on_a_location_marks_reauth_and_opens_one_incident(pg, google):
    email = new_email("g")
    iid = connect(pg, google_email=email)
    location = google.fake.layout_for(email).accounts[0].locations[1].name
    google.fake.forbid_location(location)

    for _ in range(2):
        with pytest.raises(ReauthRequired):
            sync_integration(pg, iid, today=TODAY)

    row = load(pg, iid)
    assert (row.last_sync_status, row.needs_reauth, row.error_kind) == ("error", True, "reauth_required")
    assert row.last_sync_message == MSG_PERMISSION_DENIED
    with pg.sessions() as s:
        incidents = s.scalars(select(Incident).where(Incident.integration_id == iid)).all()
    assert [(i.kind, i.reason, i.closed_at) for i in incidents] == [("reauth_required", "permission_denied", None)]


def test_transient_failure_leaves_the_state_unchanged(pg, google):
    iid = connect(pg)
    sync_integration(pg, iid, today=TODAY)
    google.fake.fail_next("performance", 503, retry_after=7)

    with pytest.raises(TransientProviderError) as info:
        sync_integration(pg, iid, today=TODAY)

    assert info.value.retry_after == 7
    row = load(pg, iid)
    assert (row.last_sync_status, row.needs_reauth, row.error_kind) == ("success", False, None)


def test_sync_works_on_sqlite(lite, google):
    email = new_email("g")
    iid = connect(lite, google_email=email)

    sync_integration(lite, iid, today=TODAY)
    sync_integration(lite, iid, today=TODAY)

    want = window_values(google.fake, email, *sync_window(TODAY, first_sync=True))
    assert stored_insights(lite.sessions, iid) == want


# --- a disconnect (DELETE /integrations/{id}) while a sync runs ---------------------------------------------


@pytest.mark.parametrize("table", ["locations", "insights"])
def test_a_sync_stores_nothing_once_the_user_has_disconnected(pg, google, table):
    """The user disconnects while a sync holds data it fetched but has not stored: nothing is written after
    the disconnect's commit, neither data nor a sync result. Another user's integration shares the Google
    account, so the disconnect revokes nothing and the sync's token keeps working (the worst case)."""
    shared = new_email("g")
    iid = connect(pg, google_email=shared)
    connect(pg, google_email=shared)
    with pg.sessions.begin() as holder:
        holder.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))  # the sync stops at its first write to it
        worker, outcome = run_in_thread(lambda: sync_integration(pg, iid, today=TODAY))
        wait_for(lambda: lock_waiters(pg) >= 1, what=f"the sync waiting to write {table}")
        disconnect(pg, load(pg, iid).user_id, iid)
    worker.join(30)
    assert [type(o) for o in outcome] == [IntegrationInactive]
    assert stored_insights(pg.sessions, iid) == {}
    with pg.sessions() as s:
        stored = s.scalar(select(func.count()).select_from(Location).where(Location.integration_id == iid))
    assert stored == (0 if table == "locations" else 2)  # fetched and stored before the disconnect: kept
    row = load(pg, iid)
    assert (row.status, row.last_sync_status, row.last_synced_at) == ("disconnected", None, None)


def test_a_sync_whose_data_was_stored_before_a_disconnect_records_no_result_after_it(pg, google):
    """The disconnect commits between a sync's last insights and its result: the row shows no sync."""
    iid = connect(pg)
    with pg.sessions.begin() as s:  # a writer holding the row the way an UPDATE does: reads pass, FOR UPDATE waits
        s.execute(text("SELECT id FROM integrations WHERE id = :id FOR NO KEY UPDATE"), {"id": iid})
        worker, outcome = run_in_thread(lambda: sync_integration(pg, iid, today=TODAY))
        wait_for(lambda: lock_waiters(pg) >= 1, what="the sync waiting to record its result")
        s.execute(
            text("UPDATE integrations SET status = 'disconnected', access_token_enc = NULL WHERE id = :id"), {"id": iid}
        )
    worker.join(30)
    assert [type(o) for o in outcome] == [IntegrationInactive]
    row = load(pg, iid)
    assert (row.status, row.last_sync_status, row.last_synced_at) == ("disconnected", None, None)


def test_a_403_found_before_a_disconnect_opens_no_incident_after_it(pg, google):
    """A sync meets a 403 and goes to record it while the API's DELETE holds the row: the disconnected
    integration gets no re-auth state and no incident (whose email would ask to reconnect it)."""
    iid = connect(pg)
    google.fake.fail_next("accounts", 403)
    with pg.sessions.begin() as s:  # the DELETE (services/api/disconnect.py), holding the row's lock
        row = lock_integration(s, iid, 10)
        worker, outcome = run_in_thread(lambda: sync_integration(pg, iid, today=TODAY))
        wait_for(lambda: lock_waiters(pg) >= 1, what="the sync waiting to record its 403")
        row.access_token_enc = row.refresh_token_enc = row.token_expires_at = None
        row.status = DISCONNECTED
    worker.join(30)
    assert [type(o) for o in outcome] == [IntegrationInactive]
    row = load(pg, iid)
    assert (row.status, row.needs_reauth, row.last_sync_status, row.error_kind) == ("disconnected", False, None, None)
    with pg.sessions() as s:
        assert s.scalars(select(Incident).where(Incident.integration_id == iid)).all() == []
