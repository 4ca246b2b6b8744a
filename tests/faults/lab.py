"""A scenario's own world: a fresh database and RabbitMQ vhost, the services as real processes, their logs.

Processes are `python -m services.worker|api|notifier` with an environment pointing at the lab's database,
vhost and the fake Google running in the test process. Their stdout/stderr go to files; the JSON lines are
read back to see which messages were processed. When the lab closes, everything it saw is searched for the
tokens the fake issued (evidence.REGISTRY).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dramatiq
import httpx

from common.bootstrap import Container, bootstrap
from common.broker import make_broker
from common.config import Settings
from common.tasks import QUEUES
from services.fake_google import FakeGoogleServer
from tests.conftest import TEST_KEYS, make_settings
from tests.faults.evidence import REGISTRY, SecretIndex, database_text
from tests.support.net import free_port
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "faults-admin-key-" + os.urandom(8).hex()
T = TypeVar("T")


@dataclass
class Proc:
    """One service process and its log file, read incrementally."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    _offset: int = 0
    _partial: bytes = b""
    lines: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def read(self) -> list[dict[str, Any]]:
        """Parse what the process wrote since the last call; returns the new JSON records."""
        with self.log_path.open("rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        complete, _, self._partial = data.rpartition(b"\n")
        new: list[dict[str, Any]] = []
        for raw in complete.split(b"\n") if complete else []:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                new.append(record)
        self.records += new
        return new

    def saw(self, event: str) -> bool:
        self.read()
        return any(r.get("event") == event for r in self.records)


class Lab:
    """Database, vhost, fake Google and service processes of one scenario."""

    def __init__(self, name: str, db_url: str, amqp_url: str, google: FakeGoogleServer, workdir: Path) -> None:
        self.name = name
        self.db_url = db_url
        self.amqp_url = amqp_url
        self.google = google
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.responses: list[str] = []
        self.secrets: set[str] = set()
        self.literals: set[str] = set()
        self._containers: list[Container] = []

    # --- in-process helpers -------------------------------------------------------------------------------
    def settings(self, **over: Any) -> Settings:
        return make_settings(
            self.db_url, self.google, broker_url=self.amqp_url, admin_api_key=_secret(ADMIN_KEY), **over
        )

    def container(self, *, pool_size: int = 20, broker: bool = True, **over: Any) -> Container:
        """A container on the lab's database (and vhost, with a RabbitMQ broker when `broker`)."""
        settings = self.settings(**over)
        b: dramatiq.Broker | None = make_broker(self.amqp_url) if broker else None
        c = bootstrap(settings, broker=b, configure_logs=False, pool_size=pool_size)
        self._containers.append(c)
        return c

    def queue_counts(self, c: Container) -> dict[str, tuple[int, int, int]]:
        """Ready messages per queue: (queue, delay queue, dead letters)."""
        assert c.broker is not None
        return {q: c.broker.get_queue_message_counts(q) for q in QUEUES}  # type: ignore[attr-defined]

    def record(self, resp: httpx.Response) -> httpx.Response:
        """Keep an API response's body for the secrets search."""
        self.responses.append(resp.text)
        return resp

    # --- processes -----------------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **self.google.env(),
            "DATABASE_URL": self.db_url,
            "BROKER_URL": self.amqp_url,
            "TOKEN_ENCRYPTION_KEYS": TEST_KEYS,
            "ADMIN_API_KEY": ADMIN_KEY,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "HTTP_TIMEOUT_SECONDS": "5",
            "VAR_DIR": str(self.workdir / "var"),
        }
        env.update(extra)
        return env

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log_path = self.workdir / f"{name}-{len(self.procs)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def worker(self, threads: int = 2, *, wait: bool = True, **env: str) -> Proc:
        proc = self.start("worker", ["-m", "services.worker", "--threads", str(threads)], self.env(**env))
        if wait:
            self.wait_started(proc, "worker.started")
        return proc

    def notifier(self, smtp_port: int, **env: str) -> Proc:
        extra = {"SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "MAIL_FROM": "integrations@faults.test", **env}
        proc = self.start("notifier", ["-m", "services.notifier"], self.env(**extra))
        self.wait_started(proc, "notifier.started")
        return proc

    def api(self, **env: str) -> Proc:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        extra = {"API_HOST": "127.0.0.1", "API_PORT": str(port), "PUBLIC_BASE_URL": url, **env}
        proc = self.start("api", ["-m", "services.api"], self.env(**extra))
        proc.url = url

        def healthy() -> bool:
            if not proc.alive():
                raise AssertionError(f"the API exited:\n{proc.log_path.read_text()}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the API to answer /healthz")
        return proc

    def wait_started(self, proc: Proc, event: str, timeout: float = 60) -> None:
        def started() -> bool:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n{proc.log_path.read_text()}")
            return proc.saw(event)

        wait_for(started, timeout, f"{proc.name} to start")

    def kill(self, proc: Proc) -> None:
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)

    def stop(self, proc: Proc, timeout: float = 30) -> int:
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            return proc.popen.wait(10)

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.name == "worker" and p.alive()]

    def records(self, names: Iterable[str] = ("worker",)) -> Iterator[dict[str, Any]]:
        for proc in self.procs:
            if proc.name in names:
                proc.read()
                yield from proc.records

    def message_events(self, events: set[str]) -> dict[str, set[str]]:
        """message_id -> the events of `events` logged for it by the workers."""
        out: dict[str, set[str]] = {}
        for r in self.records():
            if r.get("event") in events and r.get("message_id"):
                out.setdefault(r["message_id"], set()).add(r["event"])
        return out

    def unprocessed(self, expected: dict[str, set[str]]) -> set[str]:
        """Message ids of `expected` (id -> events any of which means done) without such an event yet.

        A sync logs the refresh it made on the way with its own message id, so each message says which
        events count for it.
        """
        seen = self.message_events(set().union(*expected.values()) if expected else set())
        return {mid for mid, done in expected.items() if not seen.get(mid, set()) & done}

    def count(self, event: str, names: Iterable[str] = ("worker",)) -> int:
        return sum(1 for r in self.records(names) if r.get("event") == event)

    # --- end -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs:  # all at once: each one's graceful shutdown overlaps the others'
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            self.stop(proc, 20)
            proc.read()
        for c in self._containers:
            if c.broker is not None:
                c.broker.close()
            c.close()
        self._containers.clear()

    def scan(self, issued: set[str]) -> list[str]:
        """Search every log line, recorded response and database row for the fake's tokens and our secrets."""
        literals = [self.google.fake.client_secret, ADMIN_KEY, *key_material(TEST_KEYS), *self.literals]
        index = SecretIndex(issued | self.secrets, literals)
        found: list[str] = []
        lines = [line for proc in self.procs for line in proc.lines]
        found += [f"log: {f}" for f in index.find("\n".join(lines))]
        found += [f"response: {f}" for f in index.find("\n".join(self.responses))]
        c = bootstrap(self.settings(), configure_logs=False, pool_size=1)
        rows = 0
        try:
            for table, row in database_text(c.engine):
                rows += 1
                found += [f"table {table}: {f}" for f in index.find(row)]
        finally:
            c.close()
        REGISTRY.add(
            self.name,
            secrets=index.count,
            log_lines=len(lines),
            responses=len(self.responses),
            db_rows=rows,
            found=found,
        )
        return found


def key_material(spec: str) -> list[str]:
    """The raw keys of a TOKEN_ENCRYPTION_KEYS value (secrets to search for)."""
    return [part.split(":", 1)[1] for part in spec.split(",")]


def _secret(value: str) -> Any:
    from common.config import Secret

    return Secret(value)
