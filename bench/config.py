"""The benchmark's knobs, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def _ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name, "")
    return tuple(int(x) for x in raw.split(",") if x.strip()) if raw.strip() else default


@dataclass(frozen=True)
class BenchConfig:
    """What to run and how big; every field has a `BENCH_*` variable."""

    database_url: str = DEFAULT_DATABASE
    broker_url: str = DEFAULT_BROKER
    n: int = 20_000
    latency_ms: int = 50
    worker_processes: int = 2
    worker_threads: int = 32
    zero_latency_n: int = 10_000
    baseline_sample: int = 200
    fanout_sizes: tuple[int, ...] = (100_000, 1_000_000)
    api_concurrency: tuple[int, ...] = (10, 50, 100)
    api_seconds: int = 5
    open_loop_rate: int = 1000
    open_loop_seconds: int = 10
    syncs: int = 20
    fleet_sync_n: int = 300
    fleet_sync_qpm: int = 300
    only: frozenset[str] = field(default_factory=frozenset)

    def wants(self, name: str) -> bool:
        return not self.only or name in self.only


def load_config() -> BenchConfig:
    n = _int("BENCH_N", 20_000)
    only = os.environ.get("BENCH_ONLY", "")
    return BenchConfig(
        database_url=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_DATABASE,
        broker_url=os.environ.get("BENCH_BROKER_URL") or os.environ.get("TEST_BROKER_URL") or DEFAULT_BROKER,
        n=n,
        latency_ms=_int("BENCH_LATENCY_MS", 50),
        worker_processes=_int("BENCH_WORKER_PROCESSES", 2),
        worker_threads=_int("BENCH_WORKER_THREADS", 32),
        zero_latency_n=min(n, _int("BENCH_ZERO_LATENCY_N", 10_000)),
        baseline_sample=min(n, _int("BENCH_BASELINE_SAMPLE", 200)),
        fanout_sizes=_ints("BENCH_FANOUT_SIZES", (100_000, 1_000_000)),
        api_concurrency=_ints("BENCH_API_CONCURRENCY", (10, 50, 100)),
        api_seconds=_int("BENCH_API_SECONDS", 5),
        open_loop_rate=_int("BENCH_OPEN_LOOP_RATE", 1000),
        open_loop_seconds=_int("BENCH_OPEN_LOOP_SECONDS", 10),
        syncs=_int("BENCH_SYNCS", 20),
        fleet_sync_n=_int("BENCH_FLEET_SYNC_N", 300),
        fleet_sync_qpm=_int("BENCH_FLEET_SYNC_QPM", 300),
        only=frozenset(x.strip() for x in only.split(",") if x.strip()),
    )
