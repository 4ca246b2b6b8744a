"""The scheduler with the real worker on RabbitMQ and PostgreSQL: duplicate fires are no-ops, missed runs caught up."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from common.broker import make_broker
from common.cron import CronSchedule
from common.migrate import upgrade
from common.models import SchedulerRun, utcnow
from common.scheduling import run_key
from common.tasks import REFRESH_ALL
from services.scheduler.scheduler import NightlyScheduler
from tests.conftest import TEST_KEYS, make_settings
from tests.support import services
from tests.support.flows import connect, expire_soon, new_email
from tests.support.polling import wait_for
from tests.support.worker import running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_db() -> Iterator[str]:
    """A database of this module's own: refresh_all looks at every integration, and run keys are global."""
    with services.temporary_database(services.database_server_url()) as url:
        upgrade(url)
        yield url


@pytest.fixture
def settings(own_db, amqp_url, google):
    # Only integrations expiring within 10 minutes are due, so each run's effect is this test's own.
    return make_settings(own_db, google, broker_url=amqp_url, nightly_refresh_within_seconds=600)


def due_integration(c, google) -> str:
    email = new_email("g")
    expire_soon(c, connect(c, google_email=email), 120)
    return email


def runs(c, key: str) -> list[SchedulerRun]:
    with c.sessions() as s:
        return list(s.scalars(select(SchedulerRun).where(SchedulerRun.run_key == key)))


def events(logs, name: str, key: str) -> list[dict]:
    return [e for e in logs if e["event"] == name and e.get("run_key") == key]


def test_two_schedulers_firing_in_the_same_minute_give_one_processed_refresh_all(settings, google):
    schedule = CronSchedule.parse("17 * * * *")
    target = (utcnow() - dt.timedelta(hours=3)).replace(minute=17, second=0, microsecond=0)
    offset = target - dt.timedelta(seconds=1.5) - utcnow()  # both clocks read 1.5 s before a fire
    key = run_key(REFRESH_ALL, target)
    with running_worker(settings, threads=2) as w, capture_logs() as logs:
        email = due_integration(w.container, google)
        stop = threading.Event()
        brokers = [make_broker(settings.broker_url) for _ in range(2)]  # two scheduler processes
        threads = [
            threading.Thread(
                target=NightlyScheduler(w.container.sessions, b, schedule, clock=lambda: utcnow() + offset).run,
                args=(stop,),
            )
            for b in brokers
        ]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(events(logs, "scheduler.fired", key)) == 2, what="both schedulers firing")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
            for b in brokers:
                b.close()
        wait_for(
            lambda: len(events(logs, "scheduler.run.claimed", key) + events(logs, "scheduler.run.duplicate", key)) == 2,
            what="the worker taking both messages",
        )
        claimed = events(logs, "scheduler.run.claimed", key)
        assert len(claimed) == 1 and len(events(logs, "scheduler.run.duplicate", key)) == 1
        fired = {e["message_id"] for e in events(logs, "scheduler.fired", key)}
        assert [r.message_id for r in runs(w.container, key)] == [claimed[0]["message_id"]]
        assert claimed[0]["message_id"] in fired
        wait_for(lambda: google.fake.refresh_calls_for(email) == 1, what="the nightly refresh")
        w.worker.join()
        assert google.fake.refresh_calls_for(email) == 1


def test_a_scheduler_down_over_two_oclock_catches_up_once_when_it_starts(settings, google):
    schedule = CronSchedule.parse(settings.nightly_refresh_cron, settings.scheduler_timezone)  # 0 2 * * * UTC
    # The schedulers' clocks read noon today, whenever the test runs: run near 02:00 on the real clock, a
    # regular fire would follow the catch-up within seconds and refresh the integration a second time.
    offset = dt.datetime.combine(utcnow().date(), dt.time(12), dt.UTC) - utcnow()

    def clock() -> dt.datetime:
        return utcnow() + offset

    missed = schedule.previous_fire(clock(), dt.timedelta(hours=24))
    assert missed is not None and missed.hour == 2 and missed.minute == 0
    key = run_key(REFRESH_ALL, missed)
    with running_worker(settings, threads=2) as w, capture_logs() as logs:
        email = due_integration(w.container, google)
        assert runs(w.container, key) == []
        stop = threading.Event()
        thread = threading.Thread(
            target=NightlyScheduler(w.container.sessions, w.broker, schedule, clock=clock).run, args=(stop,)
        )
        thread.start()
        try:
            [fired] = wait_for(lambda: events(logs, "scheduler.fired", key), what="the catch-up")
        finally:
            stop.set()
            thread.join(10)
        assert fired["catch_up"] is True and fired["scheduled_at"] == missed.isoformat()
        wait_for(lambda: runs(w.container, key), what="the worker claiming the run")
        wait_for(lambda: google.fake.refresh_calls_for(email) == 1, what="the missed nightly refresh")

        # Started again (a restart, a second scheduler): the run was done, nothing is sent.
        assert NightlyScheduler(w.container.sessions, w.broker, schedule, clock=clock).catch_up() is None
        w.worker.join()
        assert len(events(logs, "scheduler.fired", key)) == 1
        assert len(runs(w.container, key)) == 1
        assert google.fake.refresh_calls_for(email) == 1


def test_the_scheduler_process_logs_its_next_fires_catches_up_and_stops_on_sigterm(settings, google):
    env = {
        **os.environ,
        **google.env(),
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
        "NIGHTLY_REFRESH_CRON": "1-59 * * * *",  # fired a minute or two ago, never at another test's minute
        "SCHEDULER_TIMEZONE": "Europe/Paris",
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.scheduler"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        seen: dict[str, dict] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            seen.setdefault(event["event"], event)
            if "scheduler.fired" in seen:
                break
        assert len(seen["scheduler.started"]["next_fires"]) == 3
        assert seen["scheduler.started"]["timezone"] == "Europe/Paris"
        assert seen["scheduler.fired"]["catch_up"] is True
        assert seen["scheduler.fired"]["scheduled_at"].endswith(("+01:00", "+02:00"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
