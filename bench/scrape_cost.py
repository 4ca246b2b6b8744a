"""Benchmark 5 (`BENCH_ONLY=scrape`): what scraping every /metrics endpoint once a second costs refresh-all.

Workers (METRICS_PORT, multiprocess mode under the supervisor), a scheduler (fleet and queue gauges) and a
notifier each serve /metrics. refresh-all runs three times: without scraping, with a scraper hitting every
endpoint every second, and without again (the machine's noise brackets the difference). Then the CPU one
scrape costs each service is measured alone (200 scrapes back to back, the serving processes' CPU from
/proc), which gives the cost as a share of the machine independent of that noise.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import Engine, text

from bench import procstats
from bench.infra import free_port, wait_until
from bench.refresh_all import run_fleet
from bench.stack import Stack

SCRAPES_ALONE = 200


def _serve(stack: Stack, name: str, args: list[str]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**stack.env(), "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1", "NIGHTLY_REFRESH_CRON": "0 2 29 2 *"}
    env["VAR_DIR"] = str(stack.procs.log_dir / "var")
    proc = stack.procs.start(name, ["-m", f"services.{name}", *args], env)
    url = f"http://127.0.0.1:{port}/metrics"
    with httpx.Client(timeout=5) as client:
        wait_until(lambda: _answers(client, url), 60, f"{name} /metrics")
    return url, proc


def _group(proc: subprocess.Popen[bytes]) -> Callable[[], list[int]]:
    return lambda: sorted({proc.pid, *procstats.children(proc.pid)})


class Scraper:
    """Scrapes every endpoint once a second in a thread, as Prometheus would with scrape_interval 1s."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.scrapes = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                tick = time.monotonic()
                for url in self.urls:
                    self.bytes += len(client.get(url).content)
                    self.scrapes += 1
                self._stop.wait(max(0.0, 1.0 - (time.monotonic() - tick)))


def run(stack: Stack, engine: Engine, tokens: dict[int, str], n: int, processes: int, threads: int) -> dict[str, Any]:
    args = ["--processes", str(processes), "--threads", str(threads)]
    with engine.begin() as conn:
        # Synced once already: else the scheduler's outbox sweep owes every seeded integration a first sync.
        conn.execute(text("UPDATE integrations SET last_synced_at = now(), last_sync_status = 'success'"))
    endpoints = {
        "worker": _serve(stack, "worker", args),
        "scheduler": _serve(stack, "scheduler", []),
        "notifier": _serve(stack, "notifier", []),
    }
    stack.workers = endpoints["worker"][1]  # run_fleet's CPU groups and liveness checks find it there
    wait_until(lambda: stack.refresh_consumers() >= processes, 60, f"{processes} worker processes consuming")
    urls = [url for url, _ in endpoints.values()]
    runs = [run_fleet(stack, engine, tokens, n, "refresh-all, no scraping")]
    with Scraper(urls) as scraper:
        runs.append(run_fleet(stack, engine, tokens, n, "refresh-all, every endpoint scraped every second"))
    runs.append(run_fleet(stack, engine, tokens, n, "refresh-all, no scraping (again)"))
    per_scrape = {name: _cpu_per_scrape(url, _group(proc)) for name, (url, proc) in endpoints.items()}
    rate_without = (runs[0]["refreshes_per_second"] + runs[2]["refreshes_per_second"]) / 2
    scraped = runs[1]["refreshes_per_second"]
    cpu_per_second = sum(per_scrape.values()) / 1000  # CPU seconds each second at one scrape per endpoint per second
    # CPU seconds per refresh of the system under test (the other helpers' load on a shared machine left out).
    refresh_cpu = sum(v for k, v in runs[1]["cpu_seconds_per_1000"].items() if k != "everything_else") / 1000
    return {
        "runs": runs,
        "scrapes": scraper.scrapes,
        "bytes_per_scrape": round(scraper.bytes / max(1, scraper.scrapes)),
        "cpu_ms_per_scrape": per_scrape,
        "rate_change_pct": round(100 * (scraped - rate_without) / rate_without, 1),
        # Refresh-all is CPU-bound: the refreshes the scrapes' CPU would have paid for, per refresh/s.
        "cost_pct_of_rate": round(100 * cpu_per_second / (refresh_cpu * scraped), 2),
    }


def _cpu_per_scrape(url: str, pids: Callable[[], list[int]]) -> float:
    with httpx.Client(timeout=5) as client:
        before = sum(procstats.cpu_seconds(p) for p in pids())
        for _ in range(SCRAPES_ALONE):
            client.get(url).raise_for_status()
        after = sum(procstats.cpu_seconds(p) for p in pids())
    return round((after - before) * 1000 / SCRAPES_ALONE, 3)


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
