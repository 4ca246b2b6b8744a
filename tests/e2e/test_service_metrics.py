"""Worker, scheduler and notifier as their own processes serve /metrics; real traffic moves each family exactly.

Real PostgreSQL (a database of this module's own, so refresh-all fans out to these integrations only),
RabbitMQ (its own vhost), the fake Google over HTTP and an SMTP server (aiosmtpd). The worker runs as one
process and as a supervisor of two (prometheus_client's multiprocess mode, summed by the supervisor).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.metrics import REFRESH_ALL_JOB
from common.migrate import upgrade
from common.models import Integration
from common.tasks import REFRESH_ALL, SYNC_INTEGRATION, send
from services.fake_google import FakeGoogleServer
from tests.conftest import TEST_KEYS, make_settings
from tests.support import services
from tests.support.api import own_vhost
from tests.support.flows import connect, new_email
from tests.support.notify import smtp_server
from tests.support.polling import wait_for
from tests.support.processes import Service, base_env, service, value

# The fake's endpoints, by the API name our counter uses.
APIS = {
    "token": "token",
    "revoke": "revoke",
    "accounts": "account_management",
    "locations": "business_information",
    "performance": "performance",
}
REFRESHES = "integrations_token_refreshes_total"
SYNCS = "integrations_syncs_total"
GOOGLE = "integrations_google_requests_total"
EMAILS = "integrations_emails_total"
LAST_RUN = "integrations_last_run_timestamp_seconds"


@pytest.fixture
def own_db() -> Iterator[str]:
    with services.temporary_database(services.database_server_url()) as url:
        upgrade(url)
        yield url


def _env(db: str, amqp: str, google: FakeGoogleServer, smtp_port: int, tmp_path: Path) -> dict[str, str]:
    return base_env(
        **google.env(),
        DATABASE_URL=db,
        BROKER_URL=amqp,
        TOKEN_ENCRYPTION_KEYS=TEST_KEYS,
        SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        PUBLIC_BASE_URL="http://127.0.0.1:8000",
        VAR_DIR=str(tmp_path / "var"),
        # The start-up catch-up would send a refresh-all of its own: a cron whose last fire is not within a day.
        NIGHTLY_REFRESH_CRON="0 2 29 2 *",
    )


def _settle(svc: Service, name: str, expected: float, **labels: str) -> None:
    wait_for(lambda: value(svc.scrape(), name, **labels) >= expected, 60, f"{svc.name} {name}{labels} >= {expected}")


@pytest.mark.parametrize("processes", [1, 2])
def test_real_traffic_moves_every_family_by_exactly_what_happened(
    processes: int, own_db: str, google: FakeGoogleServer, tmp_path: Path
) -> None:
    c = bootstrap(make_settings(own_db, google), configure_logs=False)
    good, revoked = new_email("good"), new_email("revoked")
    try:
        a, b = connect(c, good), connect(c, revoked)
        # Old enough that the outbox sweep owes them no first sync, and synced an hour ago, so the scheduler's fleet
        # sync does not queue one either: the only sync is the one this test sends.
        with c.sessions.begin() as s:
            for iid in (a, b):
                row = s.get(Integration, iid)
                assert row is not None
                row.created_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
                row.last_synced_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    finally:
        c.close()
    google.fake.revoke_user(revoked)
    before = google.fake.calls

    with own_vhost() as amqp, smtp_server() as (mailbox, smtp_port):
        env = _env(own_db, amqp, google, smtp_port, tmp_path)
        with (
            service("worker", env, tmp_path, "--processes", str(processes), "--threads", "2") as worker,
            service("scheduler", env, tmp_path) as scheduler,
            service("notifier", env, tmp_path) as notifier,
        ):
            assert value(worker.scrape(), REFRESHES, outcome="succeeded", reason="") == 0
            broker = make_broker(amqp)
            try:
                sent_at = time.time()
                send(broker, REFRESH_ALL, 86400)  # as `make refresh` does: A refreshes, B meets its revoked grant
                _settle(worker, REFRESHES, 1, outcome="failed", reason="invalid_grant")
                _settle(worker, REFRESHES, 1, outcome="succeeded", reason="")
                send(broker, SYNC_INTEGRATION, a)
                _settle(worker, SYNCS, 1, outcome="succeeded")
                _settle(notifier, EMAILS, 1, kind="reauth", outcome="sent")
            finally:
                broker.close()
            wait_for(lambda: len(mailbox.to("@example.com")) == 1, 30, "the re-auth email")

            w, n, sch = worker.scrape(), notifier.scrape(), scheduler.scrape()
            assert _family(w, REFRESHES) == {
                (("outcome", "failed"), ("reason", "invalid_grant")): 1,
                (("outcome", "succeeded"), ("reason", "")): 1,
            }
            assert _family(w, SYNCS) == {(("outcome", "succeeded"),): 1}
            calls = {k: v - before.get(k, 0) for k, v in google.fake.calls.items() if v - before.get(k, 0)}
            assert calls.keys() == {"token", "accounts", "locations", "performance"}
            counted = _family(w, GOOGLE)
            assert counted.pop((("api", "token"), ("code", "400"))) == 1  # the revoked grant
            assert counted.pop((("api", "token"), ("code", "200"))) == calls.pop("token") - 1
            assert counted == {(("api", APIS[k]), ("code", "200")): v for k, v in calls.items()}
            assert sent_at <= value(w, LAST_RUN, job=REFRESH_ALL_JOB) <= time.time()
            assert _family(n, EMAILS) == {(("kind", "reauth"), ("outcome", "sent")): 1}
            # The worker's families are the worker's: the notifier and scheduler counted none of its work.
            assert _family(n, REFRESHES) == {} and _family(sch, SYNCS) == {}
            if processes > 1:
                written = {int(p.stem.split("_")[-1]) for p in _multiprocess_dir(worker).glob("counter_*.db")}
                assert written and written <= set(_children(worker.process.pid)), "the children's files, summed"
            # The fleet gauges come from the scheduler (cached for a scrape interval; their values: test_fleet_metrics).
            assert sum(_family(sch, "integrations_integrations").values()) == 2
        if processes > 1:  # the supervisor removed its children's metric files when it stopped
            assert not _multiprocess_dir(worker).exists()


def _multiprocess_dir(worker: Service) -> Path:
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    return Path(next(r["path"] for r in lines if r.get("event") == "metrics.multiprocess_dir"))


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _family(samples: dict, name: str) -> dict:
    return {labels: v for (sample, labels), v in samples.items() if sample == name and v}
