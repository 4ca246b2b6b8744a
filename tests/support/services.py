"""Real PostgreSQL and RabbitMQ for tests: from TEST_DATABASE_URL / TEST_BROKER_URL, else testcontainers."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from sqlalchemy import create_engine, text

HOW_TO = (
    "Set TEST_DATABASE_URL (postgresql+psycopg://user@host:5432/db) and TEST_BROKER_URL "
    "(amqp://guest:guest@host:5672/%2F), or run a Docker engine for testcontainers."
)
_containers: list[object] = []


def run_id() -> str:
    return "it_" + uuid.uuid4().hex[:10]


def _fail(what: str, exc: BaseException | None = None) -> None:
    detail = f" ({type(exc).__name__}: {exc})" if exc else ""
    pytest.fail(f"{what} is not available{detail}. {HOW_TO}", pytrace=False)


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
