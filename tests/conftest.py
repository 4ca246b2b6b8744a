from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from common.bootstrap import Container, bootstrap
from common.cipher import generate_key_spec
from common.config import Settings, load_settings
from common.migrate import upgrade
from services.fake_google import FakeGoogleServer, start_fake_google
from tests.support import services

TEST_KEYS = generate_key_spec("test1")
# Outside standalone mode an admin key under 32 characters stops start-up.
TEST_ADMIN_KEY = "test-admin-key-" + "0123456789abcdef" * 2


def pytest_configure(config: pytest.Config) -> None:
    services.use_local_services(lambda line: print(line, file=sys.stderr))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    services.stop_containers()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of this run's own, migrated to head."""
    with services.temporary_database(services.database_server_url()) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost of this run's own."""
    server, container = services.broker_server_url()
    with services.temporary_vhost(server, container) as url:
        yield url


@pytest.fixture(scope="session")
def google_server() -> Iterator[FakeGoogleServer]:
    server = start_fake_google()
    yield server
    server.stop()


@pytest.fixture
def google(google_server: FakeGoogleServer) -> FakeGoogleServer:
    google_server.fake.reset()
    return google_server


def make_settings(
    database_url: str, google: FakeGoogleServer, broker_url: str = "memory://", **over: object
) -> Settings:
    env = {
        **google.env(),
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
        "ADMIN_API_KEY": TEST_ADMIN_KEY,
        "LOG_FORMAT": "json",
        "HTTP_TIMEOUT_SECONDS": "3",
        "VAR_DIR": os.environ.get("PYTEST_VAR_DIR", "var/test"),
    }
    return replace(load_settings(env), **over)  # type: ignore[arg-type]


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    url = f"sqlite:///{tmp_path}/test.db"
    upgrade(url)
    return url


@pytest.fixture
def pg(pg_url: str, google: FakeGoogleServer) -> Iterator[Container]:
    """The common container on the run's PostgreSQL, pointed at the fake Google."""
    c = bootstrap(make_settings(pg_url, google), configure_logs=False, pool_size=60)
    yield c
    c.close()


@pytest.fixture
def lite(sqlite_url: str, google: FakeGoogleServer) -> Iterator[Container]:
    c = bootstrap(make_settings(sqlite_url, google), configure_logs=False)
    yield c
    c.close()


def utc(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(**delta)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
