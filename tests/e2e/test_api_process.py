"""`python -m services.api` as its own process: real HTTP, real PostgreSQL and RabbitMQ, JSON logs without secrets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from common.bootstrap import bootstrap
from common.tasks import INTEGRATION_CONNECTED, SYNC_INTEGRATION
from common.users import create_user
from services.fake_google import FakeGoogleServer
from tests.conftest import TEST_KEYS, make_settings
from tests.support.api import bearer, connect_over, drain, own_vhost
from tests.support.flows import new_email
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "e2e-admin-key-" + os.urandom(16).hex()


@dataclass
class RunningApi:
    url: str
    amqp_url: str
    metrics_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]


@pytest.fixture
def running_api(pg_url: str, google: FakeGoogleServer, tmp_path: Path) -> Iterator[RunningApi]:
    port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    with own_vhost() as amqp_url:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            **google.env(),
            "DATABASE_URL": pg_url,
            "BROKER_URL": amqp_url,
            "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "METRICS_PORT": str(metrics_port),
            "PUBLIC_BASE_URL": url,
            "ADMIN_API_KEY": ADMIN_KEY,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "VAR_DIR": str(tmp_path / "var"),
        }
        log_path = tmp_path / "api.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.api"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        running = RunningApi(url, amqp_url, f"http://127.0.0.1:{metrics_port}/metrics", log_path, process)
        try:
            _wait_healthy(running)
            yield running
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def _wait_healthy(api: RunningApi, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            pytest.fail(f"the API exited with {api.process.returncode}:\n" + "\n".join(api.log_lines()))
        try:
            if httpx.get(f"{api.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail("the API did not answer /healthz in time:\n" + "\n".join(api.log_lines()))


def test_the_api_process_connects_an_account_queues_a_sync_and_logs_json_without_secrets(
    running_api: RunningApi, pg_url: str, google: FakeGoogleServer
) -> None:
    c = bootstrap(make_settings(pg_url, google), configure_logs=False)
    try:
        _, key = create_user(c.sessions, new_email())
        with httpx.Client(base_url=running_api.url, timeout=10) as http:
            assert http.get("/readyz").json() == {"database": "ok", "broker": "ok"}
            # The browser signs in (a session opened in the database stands for the emailed link).
            iid = connect_over(http, bearer(key), sessions=c.sessions)
            sync = http.post(f"/integrations/{iid}/sync", headers=bearer(key))
            assert sync.status_code == 202
            shown = http.get(f"/integrations/{iid}", headers=bearer(key)).json()
            assert shown["status"] == "active"
            assert http.get("/admin/token-health", headers=bearer(ADMIN_KEY)).status_code == 200
            assert http.get("/metrics").status_code == 404, "METRICS_PORT takes /metrics off the public port"
        metrics = httpx.get(running_api.metrics_url, timeout=10).text
        assert (
            'integrations_api_requests_total{method="POST",route="/integrations/{id}/sync",status="202"} 1.0' in metrics
        )
    finally:
        c.close()

    queued = [(m["actor_name"], m["args"], m["message_id"]) for m in drain(running_api.amqp_url, "sync")]
    assert queued[0][:2] == (INTEGRATION_CONNECTED, [iid])
    assert queued[1:] == [(SYNC_INTEGRATION, [iid], sync.json()["message_id"])]

    running_api.process.send_signal(signal.SIGTERM)
    assert running_api.process.wait(15) == 0
    lines = running_api.log_lines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    events = [r.get("event") for r in records]
    assert "api.starting" in events and "oauth.connected" in events and events[-1] == "api.stopped"
    requests = [r for r in records if r.get("event") == "http.request"]
    assert {"route": "/integrations/{id}/sync", "status": 202} in [
        {"route": r["route"], "status": r["status"]} for r in requests
    ]
    assert any(r.get("logger", "").startswith("uvicorn") for r in records), "uvicorn logs through structlog"
    text = "\n".join(lines)
    secrets = google.fake.issued_tokens() | {key, google.fake.client_secret, TEST_KEYS.split(":", 1)[1]}
    assert secrets and not [s for s in secrets if s in text]
    assert "code=" not in text and "state=" not in text, "the OAuth callback's query is never logged"


def _exchange(api: RunningApi, *writes: bytes) -> list[str]:
    """Send `writes` on one connection, each once the answers before it are read (so each is a read of its
    own on the server); an empty write stands for "nothing to answer yet". The answers' status lines."""
    url = httpx.URL(api.url)
    statuses: list[str] = []
    with socket.create_connection((url.host, url.port), timeout=10) as sock, sock.makefile("rb") as answers:
        for data in writes:
            sock.sendall(data)
            if data.endswith(b"\r\n\r\n"):
                statuses.append(answers.readline().decode().strip())
                length = 0
                while (line := answers.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                answers.read(length)
    return statuses


def _request(method: str, path: str = "/healthz") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: api\r\n\r\n".encode()


def test_a_method_the_fast_parser_refuses_still_reaches_the_app_and_is_logged_as_other(
    running_api: RunningApi,
) -> None:
    """The API parses HTTP with httptools, which refuses methods outside its list with a 400 of its own; the
    connection goes over to h11 for such a request, so the app answers it (405 on /healthz) and logs and
    counts it as OTHER: on a new connection, split over two reads, and after other requests on the same one."""
    assert _exchange(running_api, _request("FROB")) == ["HTTP/1.1 405 Method Not Allowed"]
    split = _request("M0X")
    assert _exchange(running_api, split[:1], split[1:]) == ["HTTP/1.1 405 Method Not Allowed"]
    kept = _exchange(running_api, _request("GET"), _request("BREW"), _request("GET"))
    assert kept == ["HTTP/1.1 200 OK", "HTTP/1.1 405 Method Not Allowed", "HTTP/1.1 200 OK"]
    metrics = httpx.get(running_api.metrics_url, timeout=10).text
    assert 'integrations_api_requests_total{method="OTHER",route="/healthz",status="405"} 3.0' in metrics
    records = [json.loads(line) for line in running_api.log_lines()]
    other = [r for r in records if r.get("event") == "http.request" and r["method"] == "OTHER"]
    assert [(r["route"], r["status"]) for r in other] == [("/healthz", 405)] * 3
