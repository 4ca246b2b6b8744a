"""refresh_all on real RabbitMQ and PostgreSQL: exactly the due integrations, one refresh message each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import update

from common.bootstrap import bootstrap
from common.migrate import upgrade
from common.models import ACTIVE, DISCONNECTED, Integration
from common.tasks import REFRESH_ALL, REFRESH_INTEGRATION, send
from services.worker.fleet import due_ids
from tests.conftest import make_settings
from tests.support import services
from tests.support.flows import connect, load, new_email
from tests.support.polling import wait_for
from tests.support.worker import running_worker

DAY = 86_400


@pytest.fixture(scope="module")
def fleet_url() -> Iterator[str]:
    """A database of this module's own: refresh_all looks at every integration, so no other test's rows."""
    with services.temporary_database(services.database_server_url()) as url:
        upgrade(url)
        yield url


@pytest.fixture
def fleet_db(fleet_url: str, google) -> str:
    """The module database with every earlier test's integrations switched off."""
    c = bootstrap(make_settings(fleet_url, google), configure_logs=False, pool_size=1)
    with c.sessions.begin() as s:
        s.execute(update(Integration).values(status=DISCONNECTED))
    c.close()
    return fleet_url


def set_expiry(c, iid: int, delta: dt.timedelta | None) -> None:
    with c.sessions.begin() as s:
        s.get(Integration, iid).token_expires_at = None if delta is None else dt.datetime.now(dt.UTC) + delta


def fleet(c, google) -> dict[str, tuple[int, str]]:
    """Integrations in every situation refresh_all distinguishes, by name: (id, Google email)."""
    out = {}
    for name in ("expiring", "in_two_hours", "in_three_days", "disconnected", "revoked", "unknown_expiry"):
        email = new_email(name.replace("_", "-"))
        out[name] = (connect(c, google_email=email), email)
    set_expiry(c, out["expiring"][0], dt.timedelta(seconds=60))
    set_expiry(c, out["in_two_hours"][0], dt.timedelta(hours=2))
    set_expiry(c, out["in_three_days"][0], dt.timedelta(days=3))
    set_expiry(c, out["revoked"][0], dt.timedelta(hours=1))
    set_expiry(c, out["unknown_expiry"][0], None)
    with c.sessions.begin() as s:
        s.get(Integration, out["disconnected"][0]).status = DISCONNECTED
    google.fake.revoke_user(out["revoked"][1])
    return out


def test_refresh_all_refreshes_exactly_the_due_integrations(fleet_db, amqp_url, google):
    with running_worker(make_settings(fleet_db, google, broker_url=amqp_url)) as w:
        f = fleet(w.container, google)
        due = {f[n][0] for n in ("expiring", "in_two_hours", "revoked", "unknown_expiry")}

        mid = send(w.broker, REFRESH_ALL, DAY)

        wait_for(lambda: len(w.recorder.finished(REFRESH_INTEGRATION)) >= len(due), 30, "the refreshes")
        assert [(p.message_id, p.exception) for p in w.recorder.finished(REFRESH_ALL)] == [(mid, None)]
        refreshed = w.recorder.finished(REFRESH_INTEGRATION)
        assert sorted(p.args for p in refreshed) == sorted((iid, DAY) for iid in due)
        assert [p.exception for p in refreshed if p.args[0] == f["revoked"][0]] == ["ReauthRequired"]
        assert google.fake.total_refresh_calls == len(due)
        calls = {name: google.fake.refresh_calls_for(email) for name, (_, email) in f.items()}
        assert calls == {
            "expiring": 1,
            "in_two_hours": 1,
            "in_three_days": 0,
            "disconnected": 0,
            "revoked": 1,
            "unknown_expiry": 1,
        }
        reauth = {name for name, (iid, _) in f.items() if load(w.container, iid).needs_reauth}
        assert reauth == {"revoked"}
        revoked = load(w.container, f["revoked"][0])
        assert (revoked.last_sync_status, revoked.error_kind) == ("error", "reauth_required")
        assert load(w.container, f["expiring"][0]).token_expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)


def test_refresh_all_without_a_window_uses_the_nightly_setting(fleet_db, amqp_url, google):
    settings = make_settings(fleet_db, google, broker_url=amqp_url, nightly_refresh_within_seconds=600)
    with running_worker(settings) as w:
        f = fleet(w.container, google)

        send(w.broker, REFRESH_ALL)

        wait_for(lambda: w.recorder.finished(REFRESH_ALL), 30, "refresh_all")
        wait_for(lambda: len(w.recorder.finished(REFRESH_INTEGRATION)) >= 2, 30, "the refreshes")
        refreshed = sorted(p.args for p in w.recorder.finished(REFRESH_INTEGRATION))
        assert refreshed == sorted([(f["expiring"][0], 600), (f["unknown_expiry"][0], 600)])


def test_refresh_spread_delays_the_messages_and_all_still_run(fleet_db, amqp_url, google):
    settings = make_settings(fleet_db, google, broker_url=amqp_url, refresh_spread_seconds=2)
    with running_worker(settings) as w:
        ids = [connect(w.container) for _ in range(4)]
        sent_at = dt.datetime.now(dt.UTC)

        send(w.broker, REFRESH_ALL, DAY)

        wait_for(lambda: len(w.recorder.finished(REFRESH_INTEGRATION, ok=True)) == 4, 30, "4 refreshes")
        assert sorted(p.args[0] for p in w.recorder.finished(REFRESH_INTEGRATION)) == sorted(ids)
        assert google.fake.total_refresh_calls == 4
        # Message k of 4 is not delivered before k/4 of the spread: a lower bound Dramatiq guarantees.
        for k, iid in enumerate(ids):
            assert load(w.container, iid).last_refreshed_at >= sent_at + dt.timedelta(milliseconds=500 * k)


def test_due_ids_pages_by_id_through_every_due_integration(fleet_db, google):
    c = bootstrap(make_settings(fleet_db, google), configure_logs=False, pool_size=2)
    try:
        ids = [connect(c) for _ in range(7)]
        set_expiry(c, ids[3], dt.timedelta(days=3))
        cutoff = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=DAY)

        assert list(due_ids(c.sessions, cutoff, page=2)) == [i for i in ids if i != ids[3]]
        assert all(load(c, i).status == ACTIVE for i in ids)
    finally:
        c.close()
