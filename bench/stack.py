"""The system under test as separate processes: fake Google, workers and the API, on the run's database and vhost."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

import httpx
import pika

from bench import procstats
from bench.infra import Processes, free_port, wait_until
from common.tasks import REFRESH_QUEUE


@dataclass
class FakeProcess:
    """The fake Google, `python -m services.fake_google`, and its HTTP control surface."""

    proc: subprocess.Popen[bytes]
    url: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))

    def control(self, action: str, **data: Any) -> Any:
        resp = self.client.post(f"{self.url}/_control/{action}", json=data)
        resp.raise_for_status()
        return resp.json()

    def stats(self) -> dict[str, Any]:
        resp = self.client.get(f"{self.url}/_control/stats")
        resp.raise_for_status()
        return dict(resp.json())

    def set_latency(self, ms: float) -> None:
        self.control("latency", endpoint="*", ms=ms)

    def env(self) -> dict[str, str]:
        from services.fake_google.data import fake_env

        return fake_env(self.url)


@dataclass
class Stack:
    """Starts and stops the processes; `env()` is the configuration every one of them gets."""

    procs: Processes
    database_url: str
    broker_url: str
    keys: str
    fake: FakeProcess | None = None
    workers: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    api_url: str = ""

    def env(self) -> dict[str, str]:
        assert self.fake is not None
        return {
            **self.fake.env(),
            "DATABASE_URL": self.database_url,
            "BROKER_URL": self.broker_url,
            "TOKEN_ENCRYPTION_KEYS": self.keys,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }

    def start_fake(self, latency_ms: float) -> FakeProcess:
        port = free_port()
        args = ["-m", "services.fake_google", "--port", str(port), "--latency-ms", str(latency_ms)]
        proc = self.procs.start("fake_google", args, {})
        fake = FakeProcess(proc, f"http://127.0.0.1:{port}")
        wait_until(lambda: _answers(fake.client, f"{fake.url}/_control/stats"), 30, "the fake Google")
        self.fake = fake
        return fake

    def start_workers(self, processes: int, threads: int) -> subprocess.Popen[bytes]:
        args = ["-m", "services.worker", "--processes", str(processes), "--threads", str(threads)]
        self.workers = self.procs.start("worker", args, self.env())
        wait_until(lambda: self.refresh_consumers() >= processes, 60, f"{processes} worker processes consuming")
        return self.workers

    def worker_pids(self) -> list[int]:
        """The worker processes that do the work (the children, or the single process itself)."""
        if self.workers is None:
            return []
        return procstats.children(self.workers.pid) or [self.workers.pid]

    def stop_workers(self) -> None:
        if self.workers is not None:
            self.procs.stop(self.workers, timeout=60)
            self.workers = None

    def start_api(self) -> str:
        port = free_port()
        # One API key drives the whole benchmark: the per-key rate limit would measure itself, not the API.
        env = {**self.env(), "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_RATE_LIMIT_PER_MINUTE": "0"}
        self.api = self.procs.start("api", ["-m", "services.api"], env)
        self.api_url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=5) as client:
            wait_until(lambda: _answers(client, f"{self.api_url}/healthz"), 60, "the API")
        return self.api_url

    def stop_api(self) -> None:
        if self.api is not None:
            self.procs.stop(self.api)
            self.api = None

    def refresh_consumers(self) -> int:
        return self._queue(REFRESH_QUEUE)[1]

    def queue_depth(self, queue: str) -> int:
        return self._queue(queue)[0]

    def purge(self, *queues: str) -> None:
        with _channel(self.broker_url) as ch:
            for q in queues:
                try:
                    ch.queue_purge(q)
                except pika.exceptions.ChannelClosedByBroker:
                    return

    def _queue(self, queue: str) -> tuple[int, int]:
        try:
            with _channel(self.broker_url) as ch:
                ok = ch.queue_declare(queue, passive=True)
                return ok.method.message_count, ok.method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:  # not declared yet
            return 0, 0


class _channel:
    def __init__(self, url: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(url))

    def __enter__(self) -> Any:
        return self.conn.channel()

    def __exit__(self, *exc: object) -> None:
        if self.conn.is_open:
            self.conn.close()


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
