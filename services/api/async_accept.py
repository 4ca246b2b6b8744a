"""The work endpoints' hot path on PostgreSQL + RabbitMQ: no thread hop per request.

The key + integration check (`queries.work_check_statement`, compiled once) runs on one of a few
autocommit connections (`pg_connections`: one round trip, no BEGIN, no ROLLBACK), and the message goes out through
`AsyncPublisher`. SQLite and the in-process broker (standalone `make run`) keep the thread path.
"""

from __future__ import annotations

import weakref
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg

from common.db import psycopg_conninfo
from common.sync_requests import STALE
from common.users import key_digest
from services.api.pg_connections import Connections
from services.api.queries import work_check_result, work_check_statement

DB_WAIT_SECONDS = 5.0
# common/sync_requests.claim in one statement: the UPDATE claims the slot when free (or stale); the SELECT reads
# the snapshot from before it, so when nothing was claimed it names the sync already queued.
_CLAIM = """
WITH claimed AS (
    UPDATE integrations SET sync_message_id = %(message_id)s, sync_queued_at = now()
    WHERE id = %(integration_id)s
      AND (sync_message_id IS NULL OR sync_queued_at < now() - make_interval(secs => %(stale_seconds)s))
    RETURNING id
)
SELECT (SELECT id FROM claimed) AS claimed,
       (SELECT sync_message_id FROM integrations WHERE id = %(integration_id)s) AS queued
"""
_RELEASE = (
    "UPDATE integrations SET sync_message_id = NULL, sync_queued_at = NULL "
    "WHERE id = %(integration_id)s AND sync_message_id = %(message_id)s"
)


class DatabaseBusy(Exception):
    """No pooled connection came free in time, or the database did not answer: the caller gets 503."""


class AsyncWorkCheck:
    """`queries.authorize_work`, on the event loop, for a PostgreSQL `database_url`."""

    # 20, not 10: at 50 connections 10 left requests waiting for a connection, 0.46 against 0.38-0.40 ms of CPU
    # per request (bench/README.md); at most this many connections per API process, opened as needed.
    def __init__(self, database_url: str, *, max_size: int = 20) -> None:
        statement = work_check_statement()
        self._sql = str(statement.compile(dialect=pg_psycopg.dialect()))  # type: ignore[no-untyped-call]
        self._columns = tuple(statement.selected_columns.keys())  # the row's names, for work_check_result
        self._cursors: weakref.WeakKeyDictionary[AsyncConnection, AsyncCursor[tuple[Any, ...]]] = (
            weakref.WeakKeyDictionary()
        )
        self._connections = Connections(psycopg_conninfo(database_url), size=max_size, wait_seconds=DB_WAIT_SECONDS)

    async def check(self, api_key: str, integration_id: int) -> tuple[int, str] | None:
        """As `authorize_work`: the key's (user id, email), None for a bad key; raises for the integration."""
        digest = key_digest(api_key)
        if digest is None:
            return None
        found = await self._one(self._sql, {"digest": digest, "integration_id": integration_id})
        row: dict[str, Any] | None = None if found is None else dict(zip(self._columns, found, strict=True))
        return work_check_result(row, digest, integration_id)

    async def claim_sync(self, integration_id: int, message_id: str) -> str | None:
        """As `sync_requests.claim`: None when `message_id` now holds the slot (publish it), else the queued sync's
        message id."""
        params = {"integration_id": integration_id, "message_id": message_id, "stale_seconds": STALE.total_seconds()}
        row = await self._one(_CLAIM, params)
        if row is None or row[0] is not None:
            return None
        return str(row[1]) if row[1] else None

    async def release_sync(self, integration_id: int, message_id: str) -> None:
        """As `sync_requests.release`: free the slot `message_id` holds (it was never published)."""
        await self._one(_RELEASE, {"integration_id": integration_id, "message_id": message_id}, fetch=False)

    async def _one(self, sql: str, params: dict[str, Any], *, fetch: bool = True) -> tuple[Any, ...] | None:
        try:
            conn = await self._connections.take()
            try:
                cur = self._cursors.get(conn)
                if cur is None:  # one per connection, reused: a cursor per statement costs ~10 us of CPU
                    cur = self._cursors[conn] = conn.cursor()
                await cur.execute(sql, params)
                return await cur.fetchone() if fetch else None
            finally:
                self._connections.give(conn)
        except (TimeoutError, psycopg.OperationalError) as exc:
            raise DatabaseBusy(type(exc).__name__) from None

    async def close(self) -> None:
        await self._connections.close()
