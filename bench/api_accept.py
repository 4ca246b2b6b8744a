"""Benchmark 3: how fast the API accepts work (`POST /integrations/{id}/refresh`), next to a bare Starlette endpoint.

Since repeated `POST /sync` requests for an integration with a sync already queued are folded into it (no publish),
a load of syncs over 100 integrations would mostly measure the folding. `POST /refresh` takes the same accept path
(key and integration check, per-key limit, in-flight bound, confirmed publish) and publishes every time, so it
measures "one query + one confirmed publish", and every 202 is one message the overload step can count.
"""

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
from common.tasks import REFRESH_QUEUE

ACCEPT_PATH = "/integrations/{id}/refresh"


def loadgen(
    port: int, token: str, ids: list[int], *, concurrency: int, seconds: int, rate: int = 0, warmup: float = 1.0
) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--token", token, "--warmup", str(warmup)]
    args += ["--ids", ",".join(map(str, ids)), "--concurrency", str(concurrency), "--seconds", str(seconds)]
    args += ["--path", ACCEPT_PATH]
    if rate:
        args += ["--rate", str(rate)]
    out = subprocess.run(
        args, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, check=True, timeout=300
    )
    return dict(json.loads(out.stdout.decode().strip().splitlines()[-1]))


def _measured(pid: int, fn: Callable[[], dict[str, Any]], *, backends: bool = False) -> dict[str, Any]:
    """`fn`'s load result with the server's CPU per request; `backends`: PostgreSQL's and RabbitMQ's CPU per
    accepted (202) request too (the machine's cost of "one query + one confirmed publish")."""
    meter = procstats.CpuMeter(_BACKENDS).start() if backends else None
    cpu = procstats.cpu_seconds(pid)
    result = fn()
    used = procstats.cpu_seconds(pid) - cpu
    # The CPU was measured over the warm-up too: divided by every answer, the warm-up's included.
    every = result.get("statuses_with_warmup", result["statuses"])
    result["server_cpu_ms_per_request"] = round(1000 * used / max(1, sum(every.values())), 3)
    if meter is not None:
        spent, accepted = meter.stop(), max(1, every.get("202", 0))
        for name in _BACKENDS:
            result[f"{name}_cpu_ms_per_accepted"] = round(1000 * spent[name] / accepted, 3)
    return result


_BACKENDS: dict[str, Callable[[], list[int]]] = {
    "postgresql": lambda: procstats.pids_named("postgres"),
    "rabbitmq": lambda: procstats.pids_named("beam.smp"),
}


def overload(stack: Stack, port: int, token: str, ids: list[int], rate: int, seconds: int) -> dict[str, Any]:
    """An open loop at `rate` (2x the measured maximum): every answer's time, the excess's statuses, and the
    messages in RabbitMQ against the 202s (nothing consumes the refresh queue during this step; no warm-up, so
    every request is counted). More connections than the API's in-flight bound (API_MAX_IN_FLIGHT, 200),
    or the excess would wait in the load generator rather than reach the API."""
    stack.purge(REFRESH_QUEUE)
    result = loadgen(port, token, ids, concurrency=600, seconds=seconds, rate=rate, warmup=0.0)
    result["rate"] = rate
    result["queued"] = stack.queue_depth(REFRESH_QUEUE)
    result["accepted"] = result["statuses"].get("202", 0)
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
                    pid,
                    partial(loadgen, port, token, ids, concurrency=concurrency, seconds=cfg.api_seconds),
                    backends=name == "api",
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
        top = max(int(row["api"]["rps"]) for row in rows) if rows else cfg.open_loop_rate
        over = overload(stack, api_port, fleet.api_key, ids, 2 * top, cfg.open_loop_seconds)
        say(
            f"  overload {over['rate']}/s: statuses {over['statuses']}, max {over['max_ms']} ms "
            f"(sent {over['max_at_s']} s in), "
            f"{over['queued']} queued for {over['accepted']} accepted"
        )
        peak = {"api": procstats.peak_rss_mb(stack.api.pid), "bare": procstats.peak_rss_mb(bare.pid)}
    finally:
        stack.procs.stop(bare)
        stack.purge(REFRESH_QUEUE)
    return {"closed_loop": rows, "open_loop": fixed, "overload": over, "peak_rss_mb": peak}


def _ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
