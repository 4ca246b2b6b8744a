"""`make bench`: every benchmark in one run; prints a table and writes bench/results.json.

Environment: BENCH_N (20000), BENCH_WORKER_PROCESSES x BENCH_WORKER_THREADS (2 x 32), BENCH_LATENCY_MS (50),
BENCH_FANOUT_SIZES (100000,1000000), BENCH_API_CONCURRENCY (10,50,100), BENCH_FLEET_SYNC_N (300),
BENCH_FLEET_SYNC_QPM (300), BENCH_ONLY (refresh,sync,api,fanout,fleet_sync),
BENCH_DATABASE_URL / TEST_DATABASE_URL, BENCH_BROKER_URL / TEST_BROKER_URL; BENCH_KEEP_LOGS=1 keeps the
processes' logs, BENCH_PROFILE=1 records py-spy profiles (when py-spy is installed). See bench/README.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import api_accept, fanout, fleet_sync, report, scrape_cost, sync_latency
from bench.config import BenchConfig, load_config
from bench.fleet import seed
from bench.infra import Processes, interrupt_on_sigterm, run_name, temporary_database, temporary_vhost
from bench.refresh_all import run_baseline, run_fleet
from bench.stack import Stack
from common.cipher import TokenCipher, generate_key_spec
from common.db import make_engine
from common.migrate import upgrade

RESULTS = Path(__file__).resolve().parent / "results.json"


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cfg: BenchConfig, name: str, log_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"config": report.describe(cfg), "machine": report.machine()}
    procs = Processes(log_dir)
    with contextlib.ExitStack() as cleanup:
        db_url = cleanup.enter_context(temporary_database(cfg.database_url, name))
        broker_url = cleanup.enter_context(temporary_vhost(cfg.broker_url, name))
        cleanup.callback(procs.stop_all)
        say(f"database {name} and vhost {name} created; logs in {log_dir}")
        upgrade(db_url)
        keys = generate_key_spec("bench1")
        stack = Stack(procs, db_url, broker_url, keys)
        fake = stack.start_fake(cfg.latency_ms)
        engine = make_engine(db_url, pool_size=2)
        cleanup.callback(engine.dispose)
        started = time.perf_counter()
        grants = [tuple(g) for g in fake.control("grants", count=cfg.n, prefix="bench")["grants"]]
        fleet = seed(db_url, TokenCipher.from_spec(keys), grants)  # type: ignore[arg-type]
        results["setup"] = {"integrations": cfg.n, "seconds": round(time.perf_counter() - started, 1)}
        say(f"{cfg.n} integrations with grants at the fake in {results['setup']['seconds']} s")

        if "scrape" in cfg.only:  # only when asked for: three more refresh-all runs
            say(f"scrape cost: refresh-all of {cfg.n} three times, the middle one scraped every second")
            results["scrape_cost"] = scrape_cost.run(
                stack, engine, fleet.refresh_tokens, cfg.n, cfg.worker_processes, cfg.worker_threads
            )
            say(report.scrape_line(results["scrape_cost"]))
            stack.stop_workers()
        if cfg.wants("refresh") or cfg.wants("sync"):
            stack.start_workers(cfg.worker_processes, cfg.worker_threads)
        if cfg.wants("refresh"):
            say(
                f"refresh-all: {cfg.n} due, {cfg.latency_ms} ms at the token endpoint, "
                f"{cfg.worker_processes} x {cfg.worker_threads} worker threads"
            )
            main = run_fleet(stack, engine, fleet.refresh_tokens, cfg.n, f"refresh-all, {cfg.latency_ms} ms latency")
            say(report.one_line(main))
            fake.set_latency(0)
            say(f"refresh-all: {cfg.zero_latency_n} due, zero latency")
            zero = run_fleet(stack, engine, fleet.refresh_tokens, cfg.zero_latency_n, "refresh-all, zero latency")
            say(report.one_line(zero))
            fake.set_latency(cfg.latency_ms)
            say(f"baseline: Laravel-style sequential loop over {cfg.baseline_sample} integrations")
            base = run_baseline(stack, engine, fleet.refresh_tokens, cfg.baseline_sample)
            say(report.one_line(base))
            results["refresh_all"] = {"main": main, "zero_latency": zero, "baseline": base}
        if cfg.wants("sync") or cfg.wants("api"):
            stack.start_api()
        if cfg.wants("sync"):
            say(f"sync latency: {cfg.syncs} syncs, one at a time, {cfg.latency_ms} ms per provider call")
            results["sync_latency"] = sync_latency.run(stack, engine, fleet, cfg.syncs)
            say(report.one_line(results["sync_latency"]))
        stack.stop_workers()
        if cfg.wants("api"):
            say("API accept: POST /integrations/{id}/refresh next to a bare Starlette endpoint")
            results["api_accept"] = api_accept.run(stack, fleet, cfg, say)
        stack.stop_api()
        fake_hwm = report.peak(fake.proc.pid)
        results.setdefault("peak_rss_mb", {})["fake_google"] = fake_hwm
        procs.stop(fake.proc)
        if cfg.wants("fanout"):
            results["fanout"] = fanout.run(stack, engine, fleet.user_id, cfg.fanout_sizes, say)
    if cfg.wants("fleet_sync"):
        results["fleet_sync"] = fleet_sync.run(
            cfg.database_url, cfg.broker_url, name, procs, cfg.fleet_sync_n, cfg.fleet_sync_qpm, say
        )
        say(report.one_line(results["fleet_sync"]))
    return results


def main() -> int:
    cfg = load_config()
    interrupt_on_sigterm()
    name = run_name()
    log_dir = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    started = time.perf_counter()
    try:
        results = run(cfg, name, log_dir)
    except KeyboardInterrupt:
        say(f"interrupted: processes stopped, database and vhost dropped; logs in {log_dir}")
        return 130
    except BaseException:
        say(f"failed: processes stopped, database and vhost dropped; logs in {log_dir}")
        raise
    if not (os.environ.get("BENCH_KEEP_LOGS") or os.environ.get("BENCH_PROFILE")):
        shutil.rmtree(log_dir, ignore_errors=True)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["python"] = platform.python_version()
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    say(f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
