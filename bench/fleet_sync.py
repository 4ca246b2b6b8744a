"""Benchmark 5: a fleet sync at GBP_QPM against a fake enforcing the same quota; integrations per minute vs the maximum.

A fleet of its own (1-3 locations each, like the fault scenario), `sync_all`, two worker processes. The quota
allows at most GBP_QPM / (Performance calls per sync) integrations a minute (Performance is the busiest API:
one call per location; Account Management and Business Information take one each); the figure is the share of
that maximum reached, with the calls per sync and the 429s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from bench.fleet import seed
from bench.infra import Processes, temporary_database, temporary_vhost, wait_until
from bench.stack import Stack
from common.broker import make_broker
from common.cipher import TokenCipher, generate_key_spec
from common.db import make_engine
from common.migrate import upgrade
from common.quota import GBP_APIS
from common.tasks import SYNC_ALL, send

PER_MINUTE = 60.0


def run(
    database_url: str, broker_url: str, name: str, procs: Processes, n: int, qpm: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Sync `n` integrations at `qpm` with two worker processes of 8 threads; the figures."""
    with contextlib.ExitStack() as cleanup:
        db_url = cleanup.enter_context(temporary_database(database_url, f"{name}_fleet"))
        amqp_url = cleanup.enter_context(temporary_vhost(broker_url, f"{name}_fleet"))
        upgrade(db_url)
        keys = generate_key_spec("bench1")
        stack = Stack(procs, db_url, amqp_url, keys)
        fake = stack.start_fake(0)
        cleanup.callback(procs.stop, fake.proc)
        grants = [tuple(g) for g in fake.control("grants", count=n, prefix="fleet")["grants"]]
        for i, (email, _) in enumerate(grants):
            fake.control("user_shape", email=email, accounts=1, locations=1 + i % 3)
        seed(db_url, TokenCipher.from_spec(keys), grants)  # type: ignore[arg-type]
        performance_calls = sum(1 + i % 3 for i in range(n))
        fake.control("quota", qpm=qpm)
        env = {**stack.env(), "GBP_QPM": str(qpm)}
        workers = procs.start("worker", ["-m", "services.worker", "--processes", "2", "--threads", "8"], env)
        cleanup.callback(procs.stop, workers, 60)
        wait_until(lambda: stack.refresh_consumers() >= 2, 60, "2 worker processes consuming")
        engine = make_engine(db_url, pool_size=1)
        cleanup.callback(engine.dispose)
        broker = make_broker(amqp_url)
        say(f"fleet sync: {n} integrations ({performance_calls} locations), GBP_QPM={qpm}, 2 x 8 worker threads")
        started = time.perf_counter()
        send(broker, SYNC_ALL)
        broker.close()
        wait_until(lambda: _synced(engine) >= n, 3600, "every integration synced", interval=0.5)
        seconds = time.perf_counter() - started
        quota = fake.stats()["quota"]["apis"]
    calls = sum(quota[api]["calls"] for api in GBP_APIS)
    throttled = sum(quota[api]["throttled"] for api in GBP_APIS)
    rate = n / seconds * PER_MINUTE
    maximum = qpm / (performance_calls / n)
    return {
        "integrations": n,
        "gbp_qpm": qpm,
        "seconds": round(seconds, 1),
        "minimum_seconds": round(performance_calls / qpm * PER_MINUTE, 1),
        "integrations_per_minute": round(rate, 1),
        "max_per_minute": round(maximum, 1),
        "ratio": round(rate / maximum, 3),
        "calls_per_sync": round(calls / n, 2),
        "share_429": round(throttled / calls, 4) if calls else 0.0,
        "max_in_60s": {api: quota[api]["max_in_window"] for api in GBP_APIS},
    }


def _synced(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM integrations WHERE last_synced_at IS NOT NULL")).scalar())
