"""Fleet sync: the spread periodic schedule, sync-all, the user going first, coalesced sync requests."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from common import sync_requests
from common.bootstrap import Container, bootstrap
from common.broker import make_broker
from common.config import MEMORY_BROKER
from common.cron import CronSchedule
from common.fleet_sync import schedule_due
from common.migrate import upgrade
from common.models import Integration, User, utcnow
from common.tasks import FLEET_QUEUE, SYNC_ALL, SYNC_INTEGRATION, send
from services.scheduler.scheduler import NightlyScheduler
from tests.conftest import make_settings
from tests.support import services
from tests.support.api import Api, messages_for
from tests.support.flows import connect, new_email
from tests.support.polling import wait_for
from tests.support.worker import running_worker

pytest_plugins = ["tests.support.api"]


@pytest.fixture
def own_pg_url() -> Iterator[str]:
    """A database of this test's own: sync-all and the schedule look at every integration there is."""
    with services.temporary_database(services.database_server_url()) as url:
        upgrade(url)
        yield url


def seed_rows(c: Container, n: int, last_synced_at: dt.datetime) -> list[int]:
    with c.sessions.begin() as s:
        user = User(email=new_email("fleet"), api_key_hash=new_email("h")[:64])
        s.add(user)
        s.flush()
        rows = [
            Integration(user_id=user.id, external_account_id=f"acc-{i}", last_synced_at=last_synced_at)
            for i in range(n)
        ]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def test_the_schedule_syncs_each_integration_once_per_interval_spread_evenly(sqlite_url, google):
    c = bootstrap(make_settings(sqlite_url, google), configure_logs=False)
    broker = make_broker(MEMORY_BROKER)
    n, interval_h = 120, 1.0  # 2 a minute on average
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = seed_rows(c, n, t0 - dt.timedelta(hours=2))
    synced: dict[int, list[dt.datetime]] = {i: [] for i in ids}
    per_minute: Counter[int] = Counter()
    for minute in range(180):  # three intervals, one scheduler tick a minute
        now = t0 + dt.timedelta(minutes=minute)
        queued = schedule_due(c.sessions, broker, now, interval_h)
        per_minute[minute] = len(queued)
        done = now + dt.timedelta(seconds=30)  # the worker syncs what was queued within the minute
        with c.sessions.begin() as s:
            s.execute(update(Integration).where(Integration.id.in_(queued)).values(last_synced_at=done))
        for i in queued:
            synced[i].append(done)
    c.close()

    assert broker.queues[FLEET_QUEUE].qsize() == sum(per_minute.values())
    average = n / (interval_h * 60)
    assert max(per_minute.values()) <= 2 * average, "spread: never more than twice the average in a minute"
    assert all(times and times[0] < t0 + dt.timedelta(hours=interval_h) for times in synced.values())
    for times in synced.values():
        gaps = [(b - a) / dt.timedelta(minutes=1) for a, b in itertools.pairwise(times)]
        assert all(60 <= g <= 62 for g in gaps), f"once per interval, not again while fresh: {gaps}"
    assert all(len(times) >= 2 for times in synced.values())


def test_sync_all_syncs_every_healthy_integration_once_even_when_sent_twice(own_pg_url, amqp_url, google):
    settings = make_settings(own_pg_url, google, broker_url=amqp_url)
    with running_worker(settings, threads=2, fleet_threads=2) as w:
        healthy = [connect(w.container, google_email=new_email("all")) for _ in range(4)]
        reauth = connect(w.container, google_email=new_email("re"))
        with w.container.sessions.begin() as s:
            s.get(Integration, reauth).needs_reauth = True
        asked = utcnow().isoformat()

        # A redelivery of the same fan-out (same requested_at) and a second one must not double the work.
        send(w.broker, SYNC_ALL, requested_at=asked)
        send(w.broker, SYNC_ALL, requested_at=asked)
        wait_for(lambda: all(last_synced(w.container, i) for i in healthy), timeout=60, what="every sync")
        wait_for(lambda: len(w.recorder.finished("fleet_sync_integration")) >= 2 * len(healthy), what="both")

    performance = google.fake.stats()["calls"].get("performance", 0)
    assert performance == 2 * len(healthy), "one sync each (2 locations): the second fan-out's were skipped"
    assert last_synced(w.container, reauth) is None
    completed = REGISTRY.get_sample_value("integrations_last_run_timestamp_seconds", {"job": "sync_all"})
    assert completed is not None and completed >= dt.datetime.fromisoformat(asked).timestamp() - 1


def test_a_users_sync_overtakes_a_saturated_fleet(own_pg_url, amqp_url, google):
    settings = make_settings(own_pg_url, google, broker_url=amqp_url, gbp_qpm=60)  # one call a second per API
    with running_worker(settings, threads=2, fleet_threads=2) as w:
        fleet = [connect(w.container, google_email=new_email("f")) for _ in range(10)]
        user = connect(w.container, google_email=new_email("u"))
        with w.container.sessions.begin() as s:  # the user's integration is not part of this fan-out
            s.get(Integration, user).needs_reauth = True
        send(w.broker, SYNC_ALL)
        wait_for(lambda: google.fake.stats()["calls"].get("performance", 0) >= 2, what="the fleet sync under way")
        with w.container.sessions.begin() as s:
            s.get(Integration, user).needs_reauth = False

        send(w.broker, SYNC_INTEGRATION, user)

        wait_for(lambda: last_synced(w.container, user), timeout=60, what="the user's sync")
        fleet_done = sum(1 for i in fleet if last_synced(w.container, i))
        wait_for(lambda: all(last_synced(w.container, i) for i in fleet), timeout=120, what="the fleet sync")
    # 10 fleet syncs need 20 Performance calls: at least 20 s at this budget; the user's needed 4 calls.
    assert fleet_done < len(fleet), "the user's sync finished while the fleet sync was still running"


def test_repeated_sync_requests_are_folded_into_the_queued_one(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)

    answers = [api.client.post(f"/integrations/{iid}/sync", headers=headers) for _ in range(5)]

    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["message_id"] for a in answers}
    assert len(ids) == 1
    queued = messages_for(api.amqp_url, "sync", SYNC_INTEGRATION, iid)
    assert [m["message_id"] for m in queued] == list(ids)

    # Once that sync starts (the worker frees the slot), one more request queues exactly one more sync.
    sync_requests.release(api.c.sessions, iid, ids.pop())
    again = [api.client.post(f"/integrations/{iid}/sync", headers=headers).json()["message_id"] for _ in range(3)]
    assert len(set(again)) == 1
    assert [m["message_id"] for m in messages_for(api.amqp_url, "sync", SYNC_INTEGRATION, iid)] == again[:1]


def last_synced(c: Container, iid: int) -> dt.datetime | None:
    with c.sessions() as s:
        return s.scalar(select(Integration.last_synced_at).where(Integration.id == iid))


def test_the_scheduler_process_loop_queues_the_fleet_share_each_sweep(sqlite_url, google):
    c = bootstrap(make_settings(sqlite_url, google), configure_logs=False)
    broker = make_broker(MEMORY_BROKER)
    ids = seed_rows(c, 60, utcnow() - dt.timedelta(hours=30))
    schedule = CronSchedule.parse("0 2 * * *", "UTC")
    scheduler = NightlyScheduler(c.sessions, broker, schedule, sweep_every_seconds=0.2, fleet_interval_hours=24)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: broker.queues[FLEET_QUEUE].qsize() >= 1, what="the first fleet share")
    finally:
        stop.set()
        thread.join(10)
    c.close()
    queued = broker.queues[FLEET_QUEUE].qsize()
    assert 1 <= queued < len(ids), "a share of the fleet (60 x 1.25 / 1440 minutes: one a tick), never all at once"
