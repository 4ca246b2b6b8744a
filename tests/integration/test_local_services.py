"""`make test` with nothing set: PostgreSQL and RabbitMQ on their default local ports are used when they answer."""

from __future__ import annotations

import os

import pytest

from tests.support import services
from tests.support.net import free_port


def test_services_that_answer_are_used_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-ins for the default local ports: this run's own servers, which are known to answer.
    monkeypatch.setattr(services, "LOCAL_DATABASE_URL", services.database_server_url())
    monkeypatch.setattr(services, "LOCAL_BROKER_URL", services.broker_server_url()[0])
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("TEST_BROKER_URL", raising=False)
    said: list[str] = []

    services.use_local_services(said.append)

    assert [line.split(":")[0] for line in said] == ["TEST_DATABASE_URL is unset", "TEST_BROKER_URL is unset"]
    assert services.database_server_url() == services.LOCAL_DATABASE_URL


def test_services_that_do_not_answer_are_left_to_testcontainers(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setattr(services, "LOCAL_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")
    monkeypatch.setattr(services, "LOCAL_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{port}/%2F")
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("TEST_BROKER_URL", raising=False)
    said: list[str] = []

    services.use_local_services(said.append)

    assert said == []
    assert "TEST_DATABASE_URL" not in os.environ and "TEST_BROKER_URL" not in os.environ
