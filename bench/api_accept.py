"""Benchmark 3: how fast the API accepts POST /integrations/{id}/sync, next to a bare Starlette endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx

from bench import procstats
from bench.config import BenchConfig
from bench.fleet import Fleet
from bench.infra import ROOT, free_port, wait_until
from bench.profiling import Profiler
from bench.stack import Stack
from common.tasks import SYNC_QUEUE


def loadgen(port: int, token: str, ids: list[int], *, concurrency: int, seconds: int, rate: int = 0) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--token", token]
    args += ["--ids", ",".join(map(str, ids)), "--concurrency", str(concurrency), "--seconds", str(seconds)]
    if rate:
        args += ["--rate", str(rate)]
    out = subprocess.run(
        args, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, check=True, timeout=300
    )
    return dict(json.loads(out.stdout.decode().strip().splitlines()[-1]))


def _measured(pid: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    cpu = procstats.cpu_seconds(pid)
    result = fn()
    used = procstats.cpu_seconds(pid) - cpu
    result["server_cpu_ms_per_request"] = round(1000 * used / max(1, result["requests"]), 3)
    return result


def run(stack: Stack, fleet: Fleet, cfg: BenchConfig, say: Callable[[str], None]) -> dict[str, Any]:
    assert stack.api is not None
    ids = list(range(1, min(100, len(fleet.refresh_tokens)) + 1))
    bare_port = free_port()
    bare = stack.procs.start("bare_starlette", ["-m", "bench.bare_app", "--port", str(bare_port)], {})
    with httpx.Client(timeout=5) as client:
        wait_until(lambda: _ok(client, f"http://127.0.0.1:{bare_port}/healthz"), 30, "the bare Starlette app")
    api_port = int(stack.api_url.rsplit(":", 1)[1])
    servers = {"api": (api_port, fleet.api_key, stack.api.pid), "bare": (bare_port, "", bare.pid)}
    rows: list[dict[str, Any]] = []
    try:
        for concurrency in cfg.api_concurrency:
            row: dict[str, Any] = {"concurrency": concurrency}
            for name, (port, token, pid) in servers.items():
                profiler = Profiler(stack.procs.log_dir, f"{name}_c{concurrency}", {name: pid})
                row[name] = _measured(
                    pid, partial(loadgen, port, token, ids, concurrency=concurrency, seconds=cfg.api_seconds)
                )
                profiler.stop()
            row["ratio"] = round(row["api"]["rps"] / row["bare"]["rps"], 3) if row["bare"]["rps"] else 0.0
            say(
                f"  {concurrency:>4} connections: API {row['api']['rps']}/s p50 {row['api']['p50_ms']} ms "
                f"p99 {row['api']['p99_ms']} ms | bare {row['bare']['rps']}/s p99 {row['bare']['p99_ms']} ms "
                f"| ratio {row['ratio']}"
            )
            rows.append(row)
        fixed: dict[str, Any] = {"rate": cfg.open_loop_rate}
        for name, (port, token, pid) in servers.items():
            run_fixed = partial(
                loadgen, port, token, ids, concurrency=100, seconds=cfg.open_loop_seconds, rate=cfg.open_loop_rate
            )
            fixed[name] = _measured(pid, run_fixed)
        say(
            f"  open loop {cfg.open_loop_rate}/s: API p50 {fixed['api']['p50_ms']} ms p99 {fixed['api']['p99_ms']} ms"
            f" | bare p99 {fixed['bare']['p99_ms']} ms"
        )
        peak = {"api": procstats.peak_rss_mb(stack.api.pid), "bare": procstats.peak_rss_mb(bare.pid)}
    finally:
        stack.procs.stop(bare)
        stack.purge(SYNC_QUEUE)
    return {"closed_loop": rows, "open_loop": fixed, "peak_rss_mb": peak}


def _ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
