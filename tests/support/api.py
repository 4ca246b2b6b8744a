"""Harness for the HTTP API tests: the app on real PostgreSQL and a RabbitMQ vhost of its own, fake Google."""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import httpx
import pika
import pika.exceptions
import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.testclient import TestClient

from common.bootstrap import Container, bootstrap
from common.broker import make_broker
from common.config import Settings
from common.users import create_user
from services.api.app import create_app
from services.api.publishing import api_broker_url
from services.fake_google import FakeGoogleServer
from tests.conftest import make_settings
from tests.support import services
from tests.support.flows import new_email
from tests.support.web import open_flow


@functools.cache
def rabbit_server() -> tuple[str, object | None]:
    """The RabbitMQ server of this run (TEST_BROKER_URL or a container), shared by every API test."""
    return services.broker_server_url()


def rabbitmqctl(*args: str) -> None:
    _, container = rabbit_server()
    services._rabbitmqctl(container, *args)


def vhost_url(name: str) -> str:
    server, _ = rabbit_server()
    parts = urlsplit(server)
    return urlunsplit(parts._replace(path="/" + quote(name, safe=""), query="heartbeat=30"))


def create_vhost(name: str) -> str:
    user = urlsplit(rabbit_server()[0]).username or "guest"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    return vhost_url(name)


@contextmanager
def own_vhost() -> Iterator[str]:
    """A vhost of the caller's own: other engineers' workers never consume what the API tests publish."""
    server, container = rabbit_server()
    with services.temporary_vhost(server, container) as url:
        yield url


@pytest.fixture(scope="module")
def api_vhost() -> Iterator[str]:
    with own_vhost() as url:
        yield url


@dataclass
class Api:
    client: TestClient
    c: Container
    amqp_url: str
    google: FakeGoogleServer

    def user(self) -> tuple[int, dict[str, str]]:
        """A new user and the headers carrying their API key."""
        user_id, key = create_user(self.c.sessions, new_email())
        return user_id, bearer(key)

    def connect(self, headers: dict[str, str], google_email: str | None = None) -> int:
        """The whole browser flow: connect, consent at the fake, callback, done page; the integration id."""
        return connect_over(self.client, headers, google_email)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def build_app(settings: Settings, broker_url: str, **app_options: Any) -> tuple[Starlette, Container]:
    broker = make_broker(api_broker_url(broker_url))
    c = bootstrap(settings, broker=broker, configure_logs=False, pool_size=10)
    return create_app(c, **app_options), c


def close(c: Container) -> None:
    if c.broker is not None:
        c.broker.close()
    c.close()


@pytest.fixture
def api(pg_url: str, google: FakeGoogleServer, api_vhost: str) -> Iterator[Api]:
    app, c = build_app(make_settings(pg_url, google, broker_url=api_vhost), api_vhost)
    with TestClient(app) as client:
        yield Api(client, c, api_vhost, google)
    close(c)


def consent(authorization_url: str) -> dict[str, str]:
    """Follow the authorization URL at the fake (auto-consent) and return the callback's query."""
    resp = httpx.get(authorization_url, follow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


def start(
    client: httpx.Client | TestClient,
    headers: dict[str, str],
    google_email: str | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> str:
    """Start a connect with the API key and open its first-party URL in `client`, signed in as the key's owner
    (as the user's browser would); Google's authorization URL. `sessions` for a client of a real process."""
    body = {"login_hint": google_email} if google_email else None
    resp = client.post("/integrations/google/connect", headers=headers, json=body)
    assert resp.status_code == 200, resp.text
    return open_flow(client, str(resp.json()["authorization_url"]), headers, sessions)


def connect_over(
    client: httpx.Client | TestClient,
    headers: dict[str, str],
    google_email: str | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> int:
    query = consent(start(client, headers, google_email or new_email("g"), sessions))
    resp = client.get("/oauth/google/callback", params=query, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    done = urlsplit(resp.headers["location"])
    page = client.get(f"{done.path}?{done.query}", headers={"Accept": "application/json"})
    assert page.status_code == 200, page.text
    return int(page.json()["integration_id"])


def drain(amqp_url: str, queue: str) -> list[dict[str, Any]]:
    """Take every message off `queue` (decoded Dramatiq messages); an undeclared queue is empty."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    out: list[dict[str, Any]] = []
    try:
        channel = conn.channel()
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append(json.loads(body))
    except pika.exceptions.ChannelClosedByBroker:
        return out
    finally:
        if conn.is_open:
            conn.close()


def messages_for(amqp_url: str, queue: str, actor: str, integration_id: int) -> list[dict[str, Any]]:
    return [m for m in drain(amqp_url, queue) if m["actor_name"] == actor and m["args"][:1] == [integration_id]]


class ApiServer:
    """The app on a real uvicorn server in a thread, for tests that need real sockets and timeouts."""

    def __init__(self, app: Starlette, sock: socket.socket | None = None) -> None:
        """`sock`: a socket bound already (so the app's PUBLIC_BASE_URL can name its port); else a free port."""
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "API server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
