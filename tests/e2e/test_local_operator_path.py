"""README's "Running each service on PostgreSQL and RabbitMQ", followed as written: the fake Google, the migration,
then the api, worker, scheduler and notifier as separate processes, and the curl session over HTTP."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import services
from tests.support.api import own_vhost
from tests.support.net import free_port
from tests.support.polling import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

ROOT = Path(__file__).resolve().parents[2]


def _load_env_file(path: Path) -> dict[str, str]:
    """What `set -a; . FILE; set +a` puts into the environment, for FILE's `[export] NAME=value` lines."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            words = words[1:]
        for word in words:
            name, _, value = word.partition("=")
            env[name] = value
    return env


class Stack:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def test_the_readme_operator_path_runs_the_curl_session_against_separate_services(stack: Stack, tmp_path: Path) -> None:
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    # `make fake-google` (on a free port here) writes the variables that point the services at it.
    env_file = tmp_path / "var" / "fake-google.env"
    stack.start("fake-google", "services.fake_google", "--port", "0", "--env-file", str(env_file))
    wait_for(env_file.exists, 30, "var/fake-google.env")
    with services.temporary_database(services.database_server_url()) as db_url, own_vhost() as amqp_url:
        # var/local.env, as README writes it
        keys = stack.run("services.cli", "keys", "generate").stdout.strip()
        stack.env.update(
            {
                "DATABASE_URL": db_url,
                "BROKER_URL": amqp_url,
                "TOKEN_ENCRYPTION_KEYS": keys,
                "ADMIN_API_KEY": secrets.token_hex(24),
                "PUBLIC_BASE_URL": base,
                "API_PORT": str(api_port),
                "VAR_DIR": str(tmp_path / "var"),
                **_load_env_file(env_file),
            }
        )
        migrated = stack.run("services.cli", "db", "upgrade")
        assert "applied 0001: initial schema" in migrated.stdout
        for name in ("api", "worker", "scheduler", "notifier"):
            stack.start(name, f"services.{name}")
        with httpx.Client(base_url=base, timeout=10) as http:
            wait_for(lambda: _answers(http), 60, "the API's /readyz")
            _curl_session(stack, http)
        codes = stack.stop()
    assert codes == {"fake-google": codes["fake-google"], "api": 0, "worker": 0, "scheduler": 0, "notifier": 0}, {
        name: stack.log(name)[-1500:] for name, code in codes.items() if code
    }


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _curl_session(stack: Stack, http: httpx.Client) -> None:
    key = stack.run("services.cli", "users", "create", "--email", "you@example.com").stdout.splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    # Sign in from the emailed link (the notifier writes it to VAR_DIR/mail/), keeping the session cookie.
    assert http.post("/sign-in", data={"email": "you@example.com"}).status_code == 200
    mail_dir = Path(stack.env["VAR_DIR"]) / "mail"
    mail = wait_for(lambda: next(iter(mail_dir.glob("sign-in-*.eml")), None), 60, "the sign-in email")
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    link = re.search(r"http\S+/sign-in/link\?token=(\S+)", message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert link is not None
    assert http.post("/sign-in/link", data={"token": link.group(1)}).status_code == 303
    authorization_url = http.post("/integrations/google/connect", headers=auth).json()["authorization_url"]
    google = http.get(authorization_url, follow_redirects=False).headers["location"]
    callback = httpx.get(google, follow_redirects=False, timeout=10).headers["location"]
    done = http.get(callback, follow_redirects=False)
    assert done.status_code == 303, done.text
    listed = http.get("/integrations", headers=auth).json()
    assert [i["status"] for i in listed] == ["active"]
    iid = listed[0]["id"]

    wait_for(lambda: http.get(f"/integrations/{iid}", headers=auth).json()["last_sync_status"] == "success", 60)
    queued = http.post(f"/integrations/{iid}/sync", headers=auth)
    assert queued.status_code == 202 and queued.json()["integration_id"] == iid
    today = dt.datetime.now(dt.UTC).date()
    window = {"start": (today - dt.timedelta(days=7)).isoformat(), "end": today.isoformat()}
    rows = http.get(f"/integrations/{iid}/insights", headers=auth, params=window).json()
    assert rows and {"location", "metric", "date", "value"} <= set(rows[0])

    before = http.get(f"/integrations/{iid}", headers=auth).json()["token_expires_at"]
    assert http.post(f"/integrations/{iid}/refresh", headers=auth).status_code == 202
    wait_for(lambda: http.get(f"/integrations/{iid}", headers=auth).json()["token_expires_at"] != before, 60)

    admin = {"Authorization": f"Bearer {stack.env['ADMIN_API_KEY']}"}
    health = http.get("/admin/token-health", headers=admin)
    assert health.status_code == 200 and health.json() == []
    assert http.delete(f"/integrations/{iid}", headers=auth).status_code == 204
    assert http.get(f"/integrations/{iid}", headers=auth).json()["status"] == "disconnected"
