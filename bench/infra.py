"""The run's own PostgreSQL database and RabbitMQ vhost, and the processes it starts; all removed at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent


def run_name() -> str:
    return "bench_" + uuid.uuid4().hex[:10]


@contextlib.contextmanager
def temporary_database(server_url: str, name: str) -> Iterator[str]:
    """CREATE DATABASE `name` on the server of `server_url`; DROP it (WITH FORCE) on the way out."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_size=1)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def rabbitmqctl(*args: str) -> None:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([exe, "-q", *args], check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def temporary_vhost(server_url: str, name: str) -> Iterator[str]:
    """A RabbitMQ vhost of the run's own (rabbitmqctl), deleted with every message in it on the way out."""
    user = urlsplit(server_url).username or "guest"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        parts = urlsplit(server_url)
        yield urlunsplit(parts._replace(path="/" + quote(name, safe=""), query="heartbeat=60"))
    finally:
        rabbitmqctl("delete_vhost", name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Processes:
    """Child processes of the benchmark, each in a session of its own so that it and its children can be
    stopped together (by its process group id) and a Ctrl-C reaches only the benchmark, which stops them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._running[proc.pid] = (name, proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
        """SIGTERM (the process relays it to its children), then SIGKILL to its whole process group."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of its group (a worker's children)
        proc.wait(5)
        self._running.pop(proc.pid, None)
        return proc.returncode

    def stop_all(self) -> None:
        for _name, proc in list(self._running.values())[::-1]:
            self.stop(proc, timeout=10.0)

    def check_alive(self) -> None:
        for name, proc in self._running.values():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} (pid {proc.pid}) exited with {proc.returncode}; see {self.log_dir}")


def interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` (processes, database, vhost) runs; Ctrl-C does so
    even when the benchmark was started with SIGINT ignored (a background job of a script)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
