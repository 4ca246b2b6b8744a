"""Real PostgreSQL and RabbitMQ for tests: from TEST_DATABASE_URL / TEST_BROKER_URL, else testcontainers."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text

HOW_TO = (
    "Set TEST_DATABASE_URL (postgresql+psycopg://user@host:5432/db) and TEST_BROKER_URL "
    "(amqp://guest:guest@host:5672/%2F), run them on their default local ports, or run a Docker engine "
    "for testcontainers."
)
LOCAL_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LOCAL_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
_containers: list[object] = []


def run_id() -> str:
    return "it_" + uuid.uuid4().hex[:10]


def _fail(what: str, exc: BaseException | None = None) -> None:
    detail = f" ({type(exc).__name__}: {exc})" if exc else ""
    pytest.fail(f"{what} is not available{detail}. {HOW_TO}", pytrace=False)


def use_local_services(say: Callable[[str], None]) -> None:
    """With TEST_DATABASE_URL / TEST_BROKER_URL unset, take PostgreSQL and RabbitMQ on their default local
    ports when they answer (saying so); otherwise leave the variable unset for testcontainers."""
    if not os.environ.get("TEST_DATABASE_URL") and _database_answers(LOCAL_DATABASE_URL):
        os.environ["TEST_DATABASE_URL"] = LOCAL_DATABASE_URL
        say(f"TEST_DATABASE_URL is unset: using the local PostgreSQL ({LOCAL_DATABASE_URL})")
    if not os.environ.get("TEST_BROKER_URL") and _broker_answers(LOCAL_BROKER_URL):
        os.environ["TEST_BROKER_URL"] = LOCAL_BROKER_URL
        say(f"TEST_BROKER_URL is unset: using the local RabbitMQ ({LOCAL_BROKER_URL})")


def _database_answers(url: str) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return False
    finally:
        engine.dispose()
    return True


def _broker_answers(url: str) -> bool:
    from common.broker_check import check

    try:
        check(url)
    except Exception:
        return False
    return shutil.which("rabbitmqctl") is not None or os.path.exists("/usr/sbin/rabbitmqctl")


def database_server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    try:
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine", driver="psycopg")
        container.start()
    except Exception as exc:
        _fail("PostgreSQL", exc)
    _containers.append(container)
    return str(container.get_connection_url())


def broker_server_url() -> tuple[str, object | None]:
    url = os.environ.get("TEST_BROKER_URL")
    if url:
        return url, None
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-alpine")
        container.start()
    except Exception as exc:
        _fail("RabbitMQ", exc)
    _containers.append(container)
    params = container.get_connection_params()
    return f"amqp://guest:guest@{params.host}:{params.port}/%2F", container


@contextmanager
def temporary_database(server_url: str) -> Iterator[str]:
    """A database of this test run's own on the server, dropped afterwards."""
    name = run_id()
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _fail(f"PostgreSQL at {urlsplit(server_url).hostname}", exc)
    parts = urlsplit(server_url)
    url = urlunsplit(parts._replace(path="/" + name))
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _rabbitmqctl(container: object | None, *args: str) -> None:
    if container is not None:
        code, out = container.exec(["rabbitmqctl", *args])  # type: ignore[attr-defined]
        if code != 0:
            raise RuntimeError(out.decode(errors="replace"))
        return
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def temporary_vhost(server_url: str, container: object | None) -> Iterator[str]:
    """A RabbitMQ vhost of this test run's own, deleted afterwards."""
    name = run_id()
    user = urlsplit(server_url).username or "guest"
    try:
        _rabbitmqctl(container, "add_vhost", name)
        _rabbitmqctl(container, "set_permissions", "-p", name, user, ".*", ".*", ".*")
    except Exception as exc:
        _fail(f"RabbitMQ vhost creation (rabbitmqctl) for {urlsplit(server_url).hostname}", exc)
    parts = urlsplit(server_url)
    url = urlunsplit(parts._replace(path="/" + quote(name, safe=""), query="heartbeat=30&connection_attempts=3"))
    try:
        yield url
    finally:
        try:
            _rabbitmqctl(container, "delete_vhost", name)
        except Exception:
            pass


def stop_containers() -> None:
    for c in _containers:
        c.stop()  # type: ignore[attr-defined]
    _containers.clear()
