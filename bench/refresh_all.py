"""Benchmark 1: refresh-all, from the refresh_all publish to the last integration refreshed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from sqlalchemy import Engine

from bench import procstats
from bench.fleet import make_due, refreshed_count
from bench.infra import ROOT
from bench.profiling import Profiler
from bench.stack import Stack
from common.broker import make_broker
from common.tasks import REFRESH_ALL, send

WITHIN = 86_400  # the nightly window: every integration whose token expires within 24 h


class CorrectnessError(AssertionError):
    """The fake did not see exactly one refresh call per due integration."""


def _refresh_calls(stack: Stack) -> dict[str, int]:
    assert stack.fake is not None
    return dict(stack.fake.stats()["refresh_calls_by_token"])


def check_one_call_each(before: dict[str, int], after: dict[str, int], expected: set[str]) -> int:
    """Raise unless the refresh calls between the two snapshots are exactly one per expected token."""
    delta = {t: n - before.get(t, 0) for t, n in after.items() if n != before.get(t, 0)}
    total = sum(delta.values())
    twice = sum(1 for n in delta.values() if n > 1)
    missing = len(expected - delta.keys())
    stray = len(delta.keys() - expected)
    if total != len(expected) or twice or missing or stray:
        raise CorrectnessError(
            f"the fake saw {total} refresh calls for {len(expected)} due integrations "
            f"({twice} refreshed more than once, {missing} never, {stray} not due)"
        )
    return total


def cpu_groups(stack: Stack) -> dict[str, Any]:
    assert stack.fake is not None
    fake_pid = stack.fake.proc.pid
    parent = stack.workers.pid if stack.workers else 0
    return {
        "workers": lambda: sorted({parent, *stack.worker_pids()}) if parent else [],
        "fake_google": lambda: [fake_pid],
        "postgresql": lambda: procstats.pids_named("postgres"),
        "rabbitmq": lambda: procstats.pids_named("beam.smp"),
        "bench": lambda: [os.getpid()],
    }


def run_fleet(stack: Stack, engine: Engine, tokens: dict[int, str], n: int, label: str) -> dict[str, Any]:
    """Make integrations 1..n due, publish one refresh_all, wait until all n are refreshed; figures."""
    make_due(engine, 1, n)
    expected = {tokens[i] for i in range(1, n + 1)}
    before = _refresh_calls(stack)
    broker = make_broker(stack.broker_url)
    assert stack.fake is not None
    profiled = {"worker0": stack.worker_pids()[0], "fake": stack.fake.proc.pid}
    profiler = Profiler(stack.procs.log_dir, label.split(",")[-1].strip().replace(" ", "_"), profiled)
    meter = procstats.CpuMeter(cpu_groups(stack)).start()
    split0 = [procstats.cpu_times(p) for p in stack.worker_pids()]
    started = time.time()
    send(broker, REFRESH_ALL, WITHIN)
    broker.close()
    deadline = time.monotonic() + max(180.0, n / 50)
    while True:
        done, errors, last = refreshed_count(engine)
        if done >= n:
            break
        if errors:
            raise CorrectnessError(f"{errors} integrations failed to refresh (see the worker log)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: only {done} of {n} refreshed before the deadline")
        stack.procs.check_alive()
        time.sleep(0.25)
    cpu = meter.stop()
    split1 = [procstats.cpu_times(p) for p in stack.worker_pids()]
    worker_sys = sum(b[1] - a[1] for a, b in zip(split0, split1, strict=False))
    profiler.stop()
    assert last is not None
    wall = last.timestamp() - started
    calls = check_one_call_each(before, _refresh_calls(stack), expected)
    worker_pids = stack.worker_pids()
    assert stack.fake is not None
    return {
        "label": label,
        "n": n,
        "provider_calls": calls,
        "wall_seconds": round(wall, 2),
        "refreshes_per_second": round(n / wall, 1),
        "cpu_seconds_per_1000": {k: round(v * 1000 / n, 2) for k, v in cpu.items() if not k.startswith("machine")},
        "worker_cpu_in_kernel_pct": round(100 * worker_sys / cpu["workers"], 1) if cpu["workers"] else 0.0,
        "machine_cpu_busy_pct": round(100 * cpu["machine_busy"] / cpu["machine_capacity"], 1),
        "peak_rss_mb": {
            **{f"worker[{i}]": procstats.peak_rss_mb(p) for i, p in enumerate(worker_pids)},
            "fake_google": procstats.peak_rss_mb(stack.fake.proc.pid),
            "bench (sends refresh_all, polls)": procstats.peak_rss_mb_self(),
        },
    }


def run_baseline(stack: Stack, engine: Engine, tokens: dict[int, str], sample: int) -> dict[str, Any]:
    """The Laravel loop on integrations 1..sample, in its own process, same fake, same latency."""
    make_due(engine, 1, sample)
    before = _refresh_calls(stack)
    out = subprocess.run(
        [sys.executable, "-m", "bench.laravel_loop"],
        env={**os.environ, "PYTHONPATH": str(ROOT), **stack.env()},
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=600,
    )
    (stack.procs.log_dir / "laravel_loop.log").write_bytes(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"the baseline loop failed ({out.returncode}); see laravel_loop.log")
    result = json.loads(out.stdout.decode().strip().splitlines()[-1])
    check_one_call_each(before, _refresh_calls(stack), {tokens[i] for i in range(1, sample + 1)})
    return {"label": "Laravel-style sequential loop", "n": sample, **result}
