"""Benchmark 2: refresh_all's fan-out (keyset pagination + bulk publish) over 100k and 1M rows, not consumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from bench import procstats
from bench.fleet import bulk_rows
from bench.infra import ROOT
from bench.stack import Stack
from common.tasks import REFRESH_QUEUE


def publish_once(stack: Stack) -> dict[str, Any]:
    meter = procstats.CpuMeter(
        {"rabbitmq": lambda: procstats.pids_named("beam.smp"), "postgresql": lambda: procstats.pids_named("postgres")}
    ).start()
    out = subprocess.run(
        [sys.executable, "-m", "bench.fanout_publisher"],
        env={**os.environ, "PYTHONPATH": str(ROOT), **stack.env()},
        cwd=ROOT,
        capture_output=True,
        check=False,
        timeout=1800,
    )
    with open(stack.procs.log_dir / "fanout_publisher.log", "ab") as log:
        log.write(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"the fan-out publisher failed ({out.returncode}); see fanout_publisher.log")
    result = dict(json.loads(out.stdout.decode().strip().splitlines()[-1]))
    cpu = meter.stop()
    result["cpu_seconds"] = {
        "publisher": result.pop("cpu_seconds"),
        "rabbitmq": cpu["rabbitmq"],
        "postgresql": cpu["postgresql"],
    }
    result["machine_cpu_busy_pct"] = round(100 * cpu["machine_busy"] / cpu["machine_capacity"], 1)
    return result


def run(stack: Stack, engine: Engine, user_id: int, sizes: tuple[int, ...], say: Callable[[str], None]) -> list[Any]:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE integrations RESTART IDENTITY CASCADE"))
    rows = 0
    results: list[dict[str, Any]] = []
    for size in sorted(sizes):
        insert_seconds = bulk_rows(engine, user_id, rows + 1, size)
        rows = size
        stack.purge(REFRESH_QUEUE)
        say(f"fan-out: {size} due integrations (inserted in {insert_seconds:.1f} s), publishing")
        result = {"rows": size, **publish_once(stack)}
        queued = stack.queue_depth(REFRESH_QUEUE)
        if queued != size or result["published"] != size:
            raise AssertionError(f"fan-out of {size} rows published {result['published']}, queue holds {queued}")
        result["queued"] = queued
        say(
            f"  {size}: {result['messages_per_second']} messages/s, {result['seconds']} s, "
            f"publisher peak RSS {result['peak_rss_mb']} MB"
        )
        results.append(result)
        stack.purge(REFRESH_QUEUE)
    return results
