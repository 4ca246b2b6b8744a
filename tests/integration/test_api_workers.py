"""`API_WORKERS` > 1: several uvicorn processes on one port, each with its own app, logging as one process does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.polling import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_api_workers_answer_and_write_no_access_log_with_query_strings(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
        "BROKER_URL": "memory://",
        "API_WORKERS": "2",
        "API_PORT": str(port),
        "VAR_DIR": str(tmp_path),
        "LOG_FORMAT": "json",
    }
    out = tmp_path / "api.log"
    with out.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/healthz?code=secret-oauth-code"

        def answered() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answered, timeout=30, what="the API workers")
        wait_for(
            lambda: sum("Application startup complete" in line for line in out.read_text().splitlines()) == 2,
            what="both workers started",
        )
        time.sleep(0.5)  # the request line is written after the answer
        lines = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
        assert [entry for entry in lines if entry.get("logger") == "uvicorn.access"] == []
        assert "secret-oauth-code" not in out.read_text()
        assert any(entry.get("event") == "http.request" and entry.get("route") == "/healthz" for entry in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
