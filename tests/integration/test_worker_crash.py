"""`python -m services.worker` as a real process: SIGKILL mid-sync redelivers; SIGTERM finishes the sync first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.models import Insight
from common.tasks import SYNC_INTEGRATION, SYNC_QUEUE, send
from tests.conftest import TEST_KEYS, make_settings
from tests.support.flows import connect, load, new_email
from tests.support.insights import assert_first_sync_stored, first_sync_values, stored_insights
from tests.support.polling import wait_for
from tests.support.worker import flush

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(pg_url, amqp_url, google):
    c = bootstrap(make_settings(pg_url, google, broker_url=amqp_url), configure_logs=False, pool_size=2)
    broker = make_broker(amqp_url)
    flush(broker)
    yield c, broker
    flush(broker)
    broker.close()
    c.close()


@pytest.fixture
def start_worker(pg_url, amqp_url, google, tmp_path) -> Iterator:
    procs: list[subprocess.Popen] = []
    logs: list = []
    env = {
        **os.environ,
        **google.env(),
        "DATABASE_URL": pg_url,
        "BROKER_URL": amqp_url,
        "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(procs)}.log", "wb")
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.worker", "--threads", "2"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    for log in logs:
        log.close()


def rows(c, iid: int) -> int:
    with c.sessions() as s:
        return s.scalar(select(func.count()).select_from(Insight).where(Insight.integration_id == iid))


def test_worker_killed_mid_sync_the_message_is_redelivered_and_synced_once(setup, start_worker, google):
    c, broker = setup
    email = new_email("g")
    iid = connect(c, google_email=email)
    google.fake.hang_next("performance", 0)  # the first location's metrics come at once ...
    google.fake.hang_next("performance", 30)  # ... the second location's call hangs: the worker is mid-sync
    first = start_worker()

    send(broker, SYNC_INTEGRATION, iid)
    wait_for(lambda: google.fake.calls.get("performance", 0) >= 2 and rows(c, iid) > 0, 60, "the worker mid-sync")
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    partial = rows(c, iid)
    assert 0 < partial < len(first_sync_values(google.fake, email))
    assert load(c, iid).last_synced_at is None

    second = start_worker()
    wait_for(lambda: load(c, iid).last_sync_status == "success", 60, "the redelivered sync")
    # exactly the fake's values: no duplicates, none missing
    assert_first_sync_stored(stored_insights(c.sessions, iid), google.fake, email)
    wait_for(lambda: broker.get_queue_message_counts(SYNC_QUEUE) == (0, 0, 0), 10, "an empty queue")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0


def test_sigterm_lets_the_running_sync_finish_before_exiting(setup, start_worker, google):
    c, broker = setup
    iid = connect(c)
    google.fake.hang_next("accounts", 2)
    worker = start_worker()

    send(broker, SYNC_INTEGRATION, iid)
    wait_for(lambda: google.fake.calls.get("accounts", 0) >= 1, 60, "the sync to start")
    worker.send_signal(signal.SIGTERM)

    assert worker.wait(60) == 0
    assert load(c, iid).last_sync_status == "success"
    assert broker.get_queue_message_counts(SYNC_QUEUE)[0] == 0


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def test_a_child_killed_under_processes_makes_the_parent_exit_non_zero(pg_url, amqp_url, google, tmp_path):
    env = {
        **os.environ,
        **google.env(),
        "DATABASE_URL": pg_url,
        "BROKER_URL": amqp_url,
        "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
        "PYTHONPATH": str(ROOT),
    }
    with open(tmp_path / "parent.log", "wb") as log:
        parent = subprocess.Popen(
            [sys.executable, "-m", "services.worker", "--processes", "2", "--threads", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            kids = wait_for(lambda: (k := _children(parent.pid)) and len(k) == 2 and k, timeout=30)
            os.kill(kids[0], signal.SIGKILL)
            # A supervisor restarts the lot only if it sees the failure: the parent must not report success.
            assert parent.wait(60) == 128 + signal.SIGKILL
        finally:
            if parent.poll() is None:
                parent.kill()
