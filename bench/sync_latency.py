"""Benchmark 4: POST /integrations/{id}/sync to insights stored (the worker's commit), one sync at a time."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
from sqlalchemy import Engine, text

from bench.fleet import Fleet
from bench.stack import Stack


def _synced_at(engine: Engine, iid: int) -> tuple[dt.datetime | None, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT i.last_synced_at, (SELECT count(*) FROM insights WHERE integration_id = i.id) "
                "FROM integrations i WHERE i.id = :id"
            ),
            {"id": iid},
        ).one()
    return row[0], int(row[1])


def _one(client: httpx.Client, stack: Stack, engine: Engine, fleet: Fleet, iid: int) -> tuple[float, int]:
    before, _ = _synced_at(engine, iid)
    started = time.time()
    resp = client.post(f"{stack.api_url}/integrations/{iid}/sync", headers={"Authorization": f"Bearer {fleet.api_key}"})
    if resp.status_code != 202:
        raise RuntimeError(f"POST /integrations/{iid}/sync answered {resp.status_code}: {resp.text[:200]}")
    deadline = time.monotonic() + 60
    while True:
        synced, values = _synced_at(engine, iid)
        if synced is not None and synced != before:
            return synced.timestamp() - started, values
        if time.monotonic() > deadline:
            raise RuntimeError(f"integration {iid} was not synced within 60 s")
        stack.procs.check_alive()
        time.sleep(0.005)


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def _refreshed_at(engine: Engine, iid: int) -> dt.datetime | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT last_refreshed_at FROM integrations WHERE id = :id"), {"id": iid}).scalar()


def _fresh_tokens(client: httpx.Client, stack: Stack, engine: Engine, fleet: Fleet, ids: list[int]) -> None:
    """POST /refresh for each (not timed): real access tokens, whatever ran before."""
    headers = {"Authorization": f"Bearer {fleet.api_key}"}
    before = {iid: _refreshed_at(engine, iid) for iid in ids}
    for iid in ids:
        client.post(f"{stack.api_url}/integrations/{iid}/refresh", headers=headers).raise_for_status()
    deadline = time.monotonic() + 60
    while any(_refreshed_at(engine, iid) == before[iid] for iid in ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the integrations to sync were not refreshed within 60 s")
        stack.procs.check_alive()
        time.sleep(0.05)


def run(stack: Stack, engine: Engine, fleet: Fleet, syncs: int) -> dict[str, Any]:
    """`syncs` first syncs (90-day backfill) of distinct integrations, then a re-sync (30 days) of each."""
    ids = list(range(1, syncs + 1))
    with httpx.Client(timeout=10) as client:
        _fresh_tokens(client, stack, engine, fleet, ids)
        first = [_one(client, stack, engine, fleet, iid) for iid in ids]
        again = [_one(client, stack, engine, fleet, iid) for iid in ids]
    return {
        "syncs": syncs,
        "label": "sync latency (POST /sync to insights stored)",
        "first_sync": {**_summary([s for s, _ in first]), "values_stored": first[0][1]},
        "resync": _summary([s for s, _ in again]),
    }
