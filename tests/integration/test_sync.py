"""common.sync_service on real PostgreSQL (and SQLite) against the fake Google over HTTP."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from common.errors import ReauthRequired, TransientProviderError
from common.gbp_client import DAILY_METRICS
from common.google_oauth import MSG_PERMISSION_DENIED
from common.models import Incident, Location
from common.sync_service import BACKFILL_DAYS, WINDOW_DAYS, sync_integration, sync_window
from tests.support.flows import connect, expire_soon, load, new_email
from tests.support.insights import stored_insights, window_values

TODAY = dt.date(2024, 3, 15)


def test_first_sync_stores_exactly_the_fakes_values_for_a_90_day_backfill(pg, google):
    email = new_email("g")
    iid = connect(pg, google_email=email)

    result = sync_integration(pg, iid, today=TODAY)

    start, end = sync_window(TODAY, first_sync=True)
    assert (start, end) == (TODAY - dt.timedelta(days=BACKFILL_DAYS), TODAY - dt.timedelta(days=1))
    want = window_values(google.fake, email, start, end)
    assert stored_insights(pg.sessions, iid) == want
    assert 0 in want.values()  # Google leaves zero values out; they are stored as 0
    assert (result.locations, result.values) == (2, len(want))
    row = load(pg, iid)
    assert row.last_sync_status == "success" and row.last_synced_at is not None and row.last_sync_message is None
    with pg.sessions() as s:
        names = set(s.scalars(select(Location.name).where(Location.integration_id == iid)))
    assert names == {loc.name for acc in google.fake.layout_for(email).accounts for loc in acc.locations}


def test_resync_reads_30_days_and_creates_no_duplicates(pg, google):
    email = new_email("g")
    iid = connect(pg, google_email=email)
    sync_integration(pg, iid, today=TODAY)
    later = TODAY + dt.timedelta(days=3)

    result = sync_integration(pg, iid, today=later)
    sync_integration(pg, iid, today=later)

    start, end = sync_window(later, first_sync=False)
    assert end - start == dt.timedelta(days=WINDOW_DAYS - 1)
    first = window_values(google.fake, email, *sync_window(TODAY, first_sync=True))
    want = first | window_values(google.fake, email, start, end)
    assert stored_insights(pg.sessions, iid) == want
    assert result.values == 2 * len(DAILY_METRICS) * WINDOW_DAYS
    with pg.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Location).where(Location.integration_id == iid)) == 2


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
