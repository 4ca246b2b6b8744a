"""Service processes for end-to-end tests: `python -m services.X` with an environment, its log, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics over HTTP, keyed by (sample name, sorted labels)."""
        text = httpx.get(self.metrics_url, timeout=5).text
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample's value (0 when absent: a counter never incremented has no sample yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def base_env(**env: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "LOG_FORMAT": "json", **env}


@contextmanager
def service(name: str, env: dict[str, str], tmp_path: Path, *args: str) -> Iterator[Service]:
    """Start `python -m services.<name>` serving /metrics on a free METRICS_PORT; stop it with SIGTERM after."""
    port = free_port()
    log_path = tmp_path / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}", *args],
            cwd=ROOT,
            env={**env, "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = Service(name, process, log_path, f"http://127.0.0.1:{port}/metrics")
    try:
        _wait_serving(running)
        yield running
    finally:
        stop(running)


def stop(running: Service, timeout: float = 30) -> int:
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait(5)
    return running.process.returncode


def _wait_serving(running: Service, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"{running.name} exited with {running.process.returncode}:\n{running.log()}")
        try:
            if httpx.get(running.metrics_url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{running.name} did not serve /metrics in time:\n{running.log()}")
