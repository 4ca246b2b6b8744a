"""The scheduler's fleet and queue gauges match the database and RabbitMQ, in a setup of known states.

A database and a vhost of this test's own; the queue gauges read RabbitMQ's management API, which
refreshes its figures every few seconds, so the scrape is polled until they arrive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pika
import pytest

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.fleet_metrics import FleetCollector
from common.migrate import upgrade
from common.models import DISCONNECTED, Incident, Integration
from common.queue_metrics import management_api
from common.tasks import SYNC_INTEGRATION, SYNC_QUEUE, send
from common.users import create_user
from services.fake_google import FakeGoogleServer
from tests.conftest import TEST_KEYS, make_settings
from tests.support import services
from tests.support.api import own_vhost
from tests.support.flows import new_email
from tests.support.polling import wait_for
from tests.support.processes import base_env, service, value

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
OLD = NOW - dt.timedelta(days=8)  # created before the outbox sweep's window: it owes these nothing


@pytest.fixture
def own_db() -> Iterator[str]:
    with services.temporary_database(services.database_server_url()) as url:
        upgrade(url)
        yield url


def _row(user_id: int, n: int, **fields: object) -> Integration:
    return Integration(user_id=user_id, external_account_id=f"acct-{n}", created_at=OLD, **fields)


def _error(kind: str, needs_reauth: bool = False) -> dict[str, object]:
    return {"last_sync_status": "error", "error_kind": kind, "needs_reauth": needs_reauth}


def _seed(db: str, google: FakeGoogleServer) -> dt.datetime:
    """Known states; returns the oldest successful sync of a healthy or stale integration."""
    c = bootstrap(make_settings(db, google), configure_logs=False)
    synced = {"last_sync_status": "success"}
    oldest = NOW - dt.timedelta(days=3)
    try:
        user, _ = create_user(c.sessions, new_email())
        rows = [
            *(_row(user, n, last_synced_at=NOW - dt.timedelta(hours=n), **synced) for n in range(1, 4)),  # healthy
            _row(user, 4, last_synced_at=oldest, **synced),  # stale (SYNC_INTERVAL_HOURS 24: older than 48 h)
            _row(user, 5, last_synced_at=NOW - dt.timedelta(hours=60), **synced),  # stale
            _row(user, 6, last_synced_at=NOW - dt.timedelta(days=30), **_error("reauth_required", needs_reauth=True)),
            _row(user, 7, **_error("reauth_required", needs_reauth=True)),
            _row(user, 8, last_synced_at=NOW, **_error("provider_config")),
            _row(user, 9, last_synced_at=NOW, **_error("transient")),
            _row(user, 10),  # never synced
            _row(user, 11),
            _row(user, 12, status=DISCONNECTED, last_synced_at=NOW - dt.timedelta(days=90), **synced),
        ]
        with c.sessions.begin() as s:
            s.add_all(rows)
            s.flush()
            told = {"opened_at": NOW, "notified_at": NOW}  # emails sent: the outbox sweep owes none
            s.add_all(
                [
                    Incident(
                        integration_id=rows[5].id, kind="reauth_required", reason="invalid_grant", message="m", **told
                    ),
                    Incident(integration_id=rows[6].id, kind="reauth_required", reason="x", message="m", **told),
                    Incident(
                        integration_id=rows[7].id, kind="provider_config", reason="invalid_client", message="m", **told
                    ),
                    Incident(
                        integration_id=rows[0].id,
                        kind="reauth_required",
                        reason="invalid_grant",
                        message="m",
                        closed_at=NOW,
                        reconnected_notified_at=NOW,
                        **told,
                    ),
                ]
            )
    finally:
        c.close()
    return oldest


def _require_management_api(amqp: str) -> None:
    api = management_api(amqp)
    try:
        httpx.get(f"{api.base_url}/api/overview", auth=api.auth, timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(
            f"RabbitMQ's management API does not answer at {api.base_url} ({type(exc).__name__}): "
            "`rabbitmq-plugins enable rabbitmq_management` (.ci/run does it)",
            pytrace=False,
        )


def test_fleet_and_queue_gauges_match_the_database_and_rabbitmq(
    own_db: str, google: FakeGoogleServer, tmp_path: Path
) -> None:
    oldest = _seed(own_db, google)
    with own_vhost() as amqp:
        _require_management_api(amqp)
        broker = make_broker(amqp)
        try:
            for n in range(4):
                send(broker, SYNC_INTEGRATION, 10_000 + n)  # declares sync, sync.DQ and sync.XQ as Dramatiq does
        finally:
            broker.close()
        conn = pika.BlockingConnection(pika.URLParameters(amqp))
        try:
            channel = conn.channel()
            dead, _, _ = channel.basic_get(SYNC_QUEUE)
            assert dead is not None
            channel.basic_reject(dead.delivery_tag, requeue=False)  # dead-lettered into sync.XQ by RabbitMQ
            held, _, _ = channel.basic_get(SYNC_QUEUE)  # unacked while this channel stays open
            assert held is not None

            env = base_env(
                **google.env(),
                DATABASE_URL=own_db,
                BROKER_URL=amqp,
                TOKEN_ENCRYPTION_KEYS=TEST_KEYS,
                NIGHTLY_REFRESH_CRON="0 2 29 2 *",
                VAR_DIR=str(tmp_path / "var"),
            )
            with service("scheduler", env, tmp_path) as scheduler:
                expected_queues = {
                    (SYNC_QUEUE, "ready"): 2,
                    (SYNC_QUEUE, "unacked"): 1,
                    (SYNC_QUEUE, "dead"): 1,
                    (f"{SYNC_QUEUE}.DQ", "ready"): 0,
                    (f"{SYNC_QUEUE}.DQ", "unacked"): 0,
                }

                def queues() -> dict[tuple[str, str], float]:
                    # The sync queues this test filled (the scheduler's fleet sync of stale rows goes to `fleet`).
                    return {
                        (dict(labels)["queue"], dict(labels)["kind"]): v
                        for (name, labels), v in scheduler.scrape().items()
                        if name == "integrations_queue_messages" and dict(labels)["queue"].startswith(SYNC_QUEUE)
                    }

                wait_for(lambda: queues() == expected_queues, 40, f"queue gauges {expected_queues}")
                samples = scheduler.scrape()
        finally:
            conn.close()

    states = {
        "healthy": 3,
        "stale": 2,
        "needs_reauth": 2,
        "provider_config": 1,
        "transient_error": 1,
        "never_synced": 2,
        "disconnected": 1,
    }
    assert {s: value(samples, "integrations_integrations", state=s) for s in states} == states
    assert value(samples, "integrations_open_incidents", kind="reauth_required") == 2
    assert value(samples, "integrations_open_incidents", kind="provider_config") == 1
    assert value(samples, "integrations_oldest_successful_sync_timestamp_seconds") == oldest.timestamp()


def test_fleet_gauges_are_one_query_per_cache_interval(own_db: str, google: FakeGoogleServer) -> None:
    _seed(own_db, google)
    c = bootstrap(make_settings(own_db, google), configure_logs=False)
    try:
        cached = FleetCollector(c.sessions, dt.timedelta(hours=48), cache_seconds=3600)
        first = [m for _ in range(5) for m in cached.collect()]
        assert cached.queries == 1
        with c.sessions.begin() as s:
            s.add(_row(create_user(c.sessions, new_email())[0], 99))
        assert cached.snapshot().states["never_synced"] == 2  # still the cached figure
        fresh = FleetCollector(c.sessions, dt.timedelta(hours=48), cache_seconds=0)
        assert fresh.snapshot().states["never_synced"] == 3
        assert first
    finally:
        c.close()
