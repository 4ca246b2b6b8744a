"""Start-up on a wrong BROKER_URL or DATABASE_URL: each service names the reason, exits on a refusal, retries an outage.

A missing vhost or a refused login cannot be fixed by retrying: the worker, scheduler and notifier exit 2
with one line naming the cause. Nothing listening (a wrong port, RabbitMQ down) may be an outage: the
service keeps trying quietly, one line per attempt with a growing delay, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from services.fake_google import FakeGoogleServer
from tests.conftest import TEST_KEYS
from tests.support import services
from tests.support.net import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["services.worker", "services.scheduler", "services.notifier"]


def _env(pg_url: str, broker_url: str, google: FakeGoogleServer, tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        **google.env(),
        "DATABASE_URL": pg_url,
        "BROKER_URL": broker_url,
        "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
        "LOG_FORMAT": "json",
        "VAR_DIR": str(tmp_path / "var"),
    }


def _with(url: str, *, path: str | None = None, password: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or "guest"
    netloc = f"{user}:{password or parts.password or ''}@{parts.hostname}:{port or parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc, path=path if path is not None else parts.path))


def _run(module: str, env: dict[str, str], seconds: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds
    )


def _the_one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The process exited 2 with exactly one `error:` line and no traceback; that line."""
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    return errors[0]


@pytest.mark.parametrize("module", SERVICES)
def test_a_missing_vhost_ends_the_service_with_rabbitmqs_reason(
    module: str, pg_url: str, amqp_url: str, google: FakeGoogleServer, tmp_path: Path
) -> None:
    url = _with(amqp_url, path="/no-such-vhost-here")
    error = _the_one_error(_run(module, _env(pg_url, url, google, tmp_path)))
    assert "vhost refused (530 NOT_ALLOWED - vhost no-such-vhost-here not found)" in error
    assert "rabbitmqctl add_vhost" in error


@pytest.mark.parametrize("module", SERVICES)
def test_a_wrong_password_ends_the_service_naming_the_refused_login(
    module: str, pg_url: str, amqp_url: str, google: FakeGoogleServer, tmp_path: Path
) -> None:
    url = _with(amqp_url, password="not-the-password")
    done = _run(module, _env(pg_url, url, google, tmp_path))
    error = _the_one_error(done)
    assert "login refused (403 ACCESS_REFUSED" in error and "user and password in BROKER_URL" in error
    assert "not-the-password" not in done.stderr + done.stdout


def test_a_wrong_port_is_retried_quietly_with_backoff_until_stopped(
    pg_url: str, amqp_url: str, google: FakeGoogleServer, tmp_path: Path
) -> None:
    url = _with(amqp_url, port=free_port())
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.worker", "--threads", "1"],
            cwd=ROOT,
            env=_env(pg_url, url, google, tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and log_path.read_text().count("broker.unavailable") < 3:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    attempts = [line for line in lines if "broker.unavailable" in line]
    assert len(attempts) >= 3
    assert all("connection refused" in line for line in attempts)
    # One line per attempt and nothing else: no pika tracebacks, and the delays grow (1 s, 2 s, 4 s ...).
    assert len(lines) <= len(attempts) + 2, "\n".join(lines[:20])
    assert '"retry_in_s": 1.0' in attempts[0] and '"retry_in_s": 2.0' in attempts[1]
    assert code == 0


def _db_with(pg_url: str, *, user: str | None = None, database: str | None = None) -> str:
    parts = urlsplit(pg_url)
    netloc = f"{user or parts.username}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + (database or parts.path[1:])))


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"database": "no_such_database_here"}, 'database "no_such_database_here" does not exist'),
        ({"user": "no_such_role_here"}, 'role "no_such_role_here" does not exist'),
        ({"database": "<fresh>"}, "the schema is missing or out of date; run `integrations db upgrade`"),
    ],
)
def test_a_database_that_refuses_us_ends_the_worker_with_postgresqls_reason(
    change: dict[str, str], names: str, pg_url: str, amqp_url: str, google: FakeGoogleServer, tmp_path: Path
) -> None:
    if change.get("database") == "<fresh>":  # a database of its own that was never migrated
        with services.temporary_database(services.database_server_url()) as empty:
            done = _run("services.worker", _env(empty, amqp_url, google, tmp_path))
    else:
        done = _run("services.worker", _env(_db_with(pg_url, **change), amqp_url, google, tmp_path))
    error = _the_one_error(done)
    assert "PostgreSQL at" in error and names in error, done.stderr[-2000:]
