"""What a first sync stores, against what the fake Google serves: one helper for every test that checks it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.gbp_client import DAILY_METRICS
from common.models import Insight
from common.sync_service import sync_window
from services.fake_google import FakeGoogle, expected_metric_value

Key = tuple[str, str, dt.date]


def window_values(fake: FakeGoogle, google_email: str, start: dt.date, end: dt.date) -> dict[Key, int]:
    """The fake's values for every location of the account, metric and day in [start, end]."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    names = [loc.name for acc in fake.layout_for(google_email).accounts for loc in acc.locations]
    return {(n, m, d): expected_metric_value(n, m, d) for n in names for m in DAILY_METRICS for d in days}


def first_sync_values(fake: FakeGoogle, google_email: str, today: dt.date | None = None) -> dict[Key, int]:
    """Every location, metric and day of the backfill window a first sync on `today` (UTC) stores."""
    return window_values(fake, google_email, *sync_window(today or dt.datetime.now(dt.UTC).date(), first_sync=True))


def stored_insights(sessions: sessionmaker[Session], integration_id: int) -> dict[Key, int]:
    """The integration's insight rows by natural key; a duplicate row fails the test."""
    with sessions() as s:
        rows = s.execute(
            select(Insight.location, Insight.metric, Insight.date, Insight.value).where(
                Insight.integration_id == integration_id
            )
        ).all()
    out: dict[Key, int] = {}
    for r in rows:
        key = (r.location, r.metric, r.date)
        assert key not in out, f"duplicate insight row {key}"
        out[key] = r.value
    return out


def assert_first_sync_stored(stored: dict[Key, int], fake: FakeGoogle, google_email: str) -> None:
    """`stored` is exactly a first sync's values: of today's window, or of yesterday's when the sync ran
    before midnight UTC and this check runs after it (the window follows the worker's clock)."""
    today = dt.datetime.now(dt.UTC).date()
    if stored == first_sync_values(fake, google_email, today - dt.timedelta(days=1)):
        return
    assert stored == first_sync_values(fake, google_email, today)
