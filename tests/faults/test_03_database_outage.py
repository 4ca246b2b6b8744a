"""3. PostgreSQL drops every connection while workers sync and refresh: they recover, retry, lose nothing.

Only our own database is touched: every backend connected to it is terminated (`pg_terminate_backend`), over
and over, while the workers are in the middle of their transactions (the fake answers slowly, so they are).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from common.models import Integration
from common.tasks import REFRESH_INTEGRATION, SYNC_INTEGRATION, send
from tests.faults.evidence import figure
from tests.faults.lab import Lab
from tests.faults.scale import Scale
from tests.faults.seed import seed
from tests.support import services
from tests.support.insights import assert_first_sync_stored, stored_insights
from tests.support.polling import wait_for

FORCE = 10**9
# Retried quickly in this test; the policy (exponential backoff, jitter, record when exhausted) is the real one.
FAST_RETRIES = {"min_backoff": 200, "max_backoff": 2_000}
SYNCED = {"sync.succeeded"}
REFRESHED = {"token.refresh.succeeded", "token.refresh.skipped"}


@pytest.fixture
def admin() -> Iterator[Engine]:
    engine = create_engine(services.database_server_url(), isolation_level="AUTOCOMMIT", pool_size=1)
    yield engine
    engine.dispose()


def terminate_backends(admin: Engine, database: str) -> int:
    """Terminate every connection to `database` (ours alone); how many there were."""
    with admin.connect() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            ).all()
        )


@pytest.mark.timeout(600)
def test_terminated_database_connections_are_retried_and_nobody_is_left_in_error(
    scale: Scale, lab: Lab, google, admin: Engine
):
    google.fake.locations_per_account = 1
    google.fake.set_latency("*", 40)  # every call takes a moment: the workers are mid-transaction when it hits
    c = lab.container(pool_size=4)
    fleet = seed(c, google.fake, scale.pg_integrations, per_user=4)
    for _ in range(2):
        lab.worker(4)
    database = urlsplit(lab.db_url).path.lstrip("/")

    sent = {send(c.broker, SYNC_INTEGRATION, s.id, **FAST_RETRIES): SYNCED for s in fleet}
    sent |= {send(c.broker, REFRESH_INTEGRATION, s.id, FORCE, **FAST_RETRIES): REFRESHED for s in fleet}
    rounds = terminated = 0
    end = time.monotonic() + scale.pg_terminate_seconds
    while time.monotonic() < end:
        terminated += terminate_backends(admin, database)
        rounds += 1
        time.sleep(0.25)

    wait_for(lambda: not lab.unprocessed(sent), 180, "every message to succeed", every=0.5)
    dead = {q: counts[2] for q, counts in lab.queue_counts(c).items()}
    assert dead == {"sync": 0, "refresh": 0, "notifications": 0, "fleet": 0}, "nothing dead-lettered"
    with c.sessions() as s:
        states = s.execute(
            select(Integration.last_sync_status, Integration.error_kind, Integration.needs_reauth, func.count())
            .where(Integration.id.in_([f.id for f in fleet]))
            .group_by(Integration.last_sync_status, Integration.error_kind, Integration.needs_reauth)
        ).all()
    assert [tuple(r) for r in states] == [("success", None, False, len(fleet))], "nobody is left in error"
    for f in fleet:
        assert_first_sync_stored(stored_insights(c.sessions, f.id), google.fake, f.google_email)
    retried = lab.count("retry.scheduled")
    assert terminated > 0 and retried > 0, "the outage hit the workers' work"
    figure(
        f"3. database outage [{scale.name}]",
        messages=len(sent),
        termination_rounds=rounds,
        backends_terminated=terminated,
        retries=retried,
        dead_lettered=sum(dead.values()),
    )
