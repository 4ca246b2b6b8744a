"""OAuth states stay bounded: at most MAX_OPEN_STATES open per user, and the scheduler's sweep purges the rest."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from common.broker import make_broker
from common.config import MEMORY_BROKER
from common.cron import CronSchedule
from common.models import OAuthState, utcnow
from common.users import create_user
from services.api.oauth_flow import MAX_OPEN_STATES, STATE_TTL, add_state
from services.scheduler.housekeeping import purge_oauth_states
from services.scheduler.scheduler import NightlyScheduler
from tests.conftest import make_settings
from tests.support.api import Api, build_app, close, consent, start
from tests.support.flows import new_email
from tests.support.polling import wait_for

pytestmark = pytest.mark.postgres
pytest_plugins = ["tests.support.api"]
JSON = {"Accept": "application/json"}


def states_of(c, user_id: int) -> list[OAuthState]:
    with c.sessions() as s:
        return list(s.scalars(select(OAuthState).where(OAuthState.user_id == user_id)))


@pytest.fixture
def api(pg_url, google, api_vhost) -> Iterator[Api]:
    """The API with its per-key rate limit off: this test opens more flows than the limit's burst allows."""
    settings = make_settings(pg_url, google, broker_url=api_vhost, api_rate_limit_per_minute=0)
    app, c = build_app(settings, api_vhost)
    with TestClient(app) as client:
        yield Api(client, c, api_vhost, google)
    close(c)


def test_a_user_holds_at_most_the_cap_of_open_states_and_the_newest_still_work(api: Api):
    user_id, headers = api.user()
    urls = [start(api.client, headers) for _ in range(MAX_OPEN_STATES + 5)]
    rows = states_of(api.c, user_id)
    assert len(rows) == MAX_OPEN_STATES, f"{len(rows)} open states for one user"
    oldest = api.client.get("/oauth/google/callback", params=consent(urls[0]), headers=JSON)
    assert (oldest.status_code, oldest.json()["error"]["code"]) == (400, "invalid_state")
    newest = api.client.get("/oauth/google/callback", params=consent(urls[-1]), follow_redirects=False)
    assert newest.status_code == 303
    # Another user's flows are not touched by this user's connects.
    other_id, other = api.user()
    with TestClient(api.client.app) as other_browser:  # each user connects from their own signed-in browser
        first = start(other_browser, other)
        for _ in range(MAX_OPEN_STATES):
            start(api.client, headers)
        assert len(states_of(api.c, other_id)) == 1
        done = other_browser.get("/oauth/google/callback", params=consent(first), follow_redirects=False)
    assert done.status_code == 303


def test_the_sweep_purges_used_and_expired_states_and_keeps_open_ones(pg):
    user_id, _ = create_user(pg.sessions, new_email())
    now = utcnow()
    with pg.sessions.begin() as s:
        for age in (0, 1, 9):
            add_state(s, user_id=user_id, integration_id=None, now=now - dt.timedelta(minutes=age))  # open
        for age in (11, 60, 24 * 60):
            add_state(s, user_id=user_id, integration_id=None, now=now - dt.timedelta(minutes=age))  # expired
    with pg.sessions.begin() as s:
        mine = select(OAuthState).where(OAuthState.user_id == user_id, OAuthState.expires_at > now)
        s.scalars(mine.order_by(OAuthState.created_at)).first().used_at = now  # an open one, used a moment ago
    assert len(states_of(pg, user_id)) == 6

    purged = purge_oauth_states(pg.sessions, now)

    left = states_of(pg, user_id)
    assert purged >= 4 and len(left) == 2
    assert all(r.used_at is None and r.expires_at > now for r in left)
    assert purge_oauth_states(pg.sessions, now) == 0


def test_the_scheduler_loop_purges_on_its_sweep(pg):
    user_id, _ = create_user(pg.sessions, new_email())
    with pg.sessions.begin() as s:
        for _ in range(3):
            add_state(s, user_id=user_id, integration_id=None, now=utcnow() - STATE_TTL - dt.timedelta(seconds=1))
    broker = make_broker(MEMORY_BROKER)
    scheduler = NightlyScheduler(pg.sessions, broker, CronSchedule.parse("0 2 * * *", "UTC"))
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    loop.start()
    try:
        wait_for(lambda: not states_of(pg, user_id), 20, "the sweep to purge the expired states")
    finally:
        stop.set()
        loop.join(10)
        broker.close()


def test_the_cap_holds_for_a_user_with_many_expired_states(pg):
    """Expired rows waiting for the sweep do not count: they neither block a connect nor get the cap wrong."""
    user_id, _ = create_user(pg.sessions, new_email())
    old = utcnow() - STATE_TTL * 2
    with pg.sessions.begin() as s:
        for _ in range(MAX_OPEN_STATES * 2):
            add_state(s, user_id=user_id, integration_id=None, now=old)
    with pg.sessions.begin() as s:
        add_state(s, user_id=user_id, integration_id=None, now=utcnow())
    with pg.sessions() as s:
        open_now = s.scalar(
            select(func.count())
            .select_from(OAuthState)
            .where(OAuthState.user_id == user_id, OAuthState.expires_at > utcnow())
        )
    assert open_now == 1
