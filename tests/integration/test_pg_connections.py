"""The API's few shared PostgreSQL connections: reused, waited for in turn, replaced when broken."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import make_url

from services.api.pg_connections import Connections


def conninfo(pg_url: str) -> str:
    return make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def backend_pid(connections: Connections) -> int:
    conn = await connections.take()
    try:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        await asyncio.sleep(0)  # let the other callers queue up behind this one
        assert row is not None
        return int(row[0])
    finally:
        connections.give(conn)


def test_many_callers_share_at_most_size_connections(pg_url: str) -> None:
    async def run() -> set[int]:
        connections = Connections(conninfo(pg_url), size=2, wait_seconds=10)
        try:
            return set(await asyncio.gather(*(backend_pid(connections) for _ in range(40))))
        finally:
            await connections.close()

    pids = asyncio.run(run())
    assert 1 <= len(pids) <= 2


def test_a_connection_the_database_dropped_fails_one_caller_and_is_replaced(pg_url: str) -> None:
    async def run() -> tuple[int, int]:
        connections = Connections(conninfo(pg_url), size=1, wait_seconds=10)
        try:
            first = await backend_pid(connections)
            async with await psycopg.AsyncConnection.connect(conninfo(pg_url), autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            with pytest.raises(psycopg.OperationalError):
                await backend_pid(connections)
            return first, await backend_pid(connections)
        finally:
            await connections.close()

    first, second = asyncio.run(run())
    assert second != first


def test_a_caller_waits_for_a_connection_at_most_wait_seconds_and_the_connection_is_not_lost(pg_url: str) -> None:
    async def run() -> tuple[int, int]:
        connections = Connections(conninfo(pg_url), size=1, wait_seconds=0.2)
        try:
            held = await connections.take()
            with pytest.raises(TimeoutError):
                await connections.take()
            connections.give(held)
            again = await connections.take()  # the one given back, to this caller: the timed-out waiter is gone
            connections.give(again)
            return id(held), id(again)
        finally:
            await connections.close()

    held, again = asyncio.run(run())
    assert held == again
