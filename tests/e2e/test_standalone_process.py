"""`make run` (`python -m services.standalone`) as its own process: start-up failures are one clear line, exit 1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path}/standalone.db",
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_FORMAT": "json",
        **env,
    }


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.standalone"],
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_port_in_use_stops_start_up_with_a_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = _run(tmp_path, API_PORT=str(port))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr.splitlines()[-1]
    # uvicorn's own error goes through the JSON logs like every other line, not in uvicorn's format on stderr
    logged = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(e["level"] == "error" and "address already in use" in e["event"] for e in logged)
    assert "address already in use" not in result.stderr


def test_an_unreachable_database_stops_start_up_with_a_message(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused

        result = _run(tmp_path, DATABASE_URL=f"postgresql+psycopg://postgres:pw-not-shown@127.0.0.1:{port}/x")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: the database is unreachable") and "pw-not-shown" not in result.stderr


def test_it_serves_on_api_port_and_stops_on_sigterm(tmp_path):
    port = free_port()
    err = tmp_path / "stderr.txt"
    with err.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.standalone"],
            cwd=tmp_path,
            env=_env(tmp_path, API_PORT=str(port)),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C" not in err.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        # Without PUBLIC_BASE_URL the one process knows where its API is: the URL it prints and the OAuth
        # redirect URI point there, not at the default port 8000.
        assert f"integrations is running at http://127.0.0.1:{port} " in err.read_text(), err.read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, err.read_text()
    assert "Traceback" not in err.read_text()
