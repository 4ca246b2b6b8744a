"""The refresh path's locked read and write, without the ORM: no identity map, no flush, no statement compile.

`LockedRows` (PostgreSQL) is the hot path: its own psycopg pool of autocommit connections, and two round trips
per refresh: `BEGIN; SET LOCAL lock_timeout; SELECT ... FOR UPDATE` as one simple query, then the `UPDATE` and
`COMMIT` together (bound client-side by psycopg's `ClientCursor`, which quotes every value), or `ROLLBACK`.
No pool pre-ping: a connection found dead at the first statement (a restarted server) is dropped, the pool
checks its other idle connections, and the statement is retried once; nothing had been done on it.

`lock_row`/`write_changes` do the same inside a SQLAlchemy session's transaction, for the paths that need the
ORM in the same transaction (incidents) and for SQLite.

The row comes back as a transient `Integration` (not in the session), so the helpers that change a row
(`store_grant`, `mark_failed`) work on it unchanged; `write_changes` then sends one `UPDATE` of the
columns that changed (and `updated_at`, as the column's `onupdate` would). On PostgreSQL both go straight
to psycopg on the session's connection, inside the session's transaction: one round trip for the
transaction-local `lock_timeout` and the `SELECT ... FOR UPDATE` together, one for the `UPDATE`, with
fixed statement texts that psycopg prepares once per connection. SQLite goes through Core (`locked_select`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from common.db import psycopg_conninfo
from common.errors import IntegrationNotFound, LockTimeout
from common.locking import locked_select
from common.models import Integration, utcnow

_TABLE: Table = Integration.__table__  # type: ignore[assignment]
_COLUMNS = tuple(c.key for c in _TABLE.columns)
# Column names from the table; the id is formatted in as an integer (`:d`) by lock_row.
_SELECT_SQL = f"SELECT {', '.join(_COLUMNS)} FROM integrations WHERE id = {{id:d}} FOR UPDATE"  # noqa: S608


APPLICATION_NAME = "integrations-refresh"  # how the pool's sessions show in pg_stat_activity
_UPDATE_SQL = "UPDATE integrations SET {sets} WHERE id = %s"  # column names from the table, values as parameters


class LockedRow:
    """An integration's row locked in an open transaction: `row` as read; `commit()` writes what changed."""

    def __init__(self, conn: psycopg.Connection[Any], row: Integration, read: dict[str, Any]) -> None:
        self.row, self._conn, self._read = row, conn, read

    def commit(self) -> None:
        """One round trip: the UPDATE of the changed columns and the COMMIT (just the COMMIT when none changed)."""
        changed = _changes(self.row, self._read)
        with psycopg.ClientCursor(self._conn) as cur:
            if changed:
                sql = _UPDATE_SQL.format(sets=", ".join(f"{key} = %s" for key in changed)) + "; COMMIT"
                cur.execute(sql.encode(), [*changed.values(), self.row.id])
            else:
                cur.execute(b"COMMIT")


class LockedRows:
    """Row locks for the refresh path on PostgreSQL, on a pool of its own (see the module's docstring)."""

    def __init__(self, database_url: str, *, max_size: int) -> None:
        self._pool = ConnectionPool(
            psycopg_conninfo(database_url),
            min_size=1,
            max_size=max(1, max_size),
            open=False,
            kwargs={"autocommit": True, "application_name": APPLICATION_NAME},
            name="refresh",
            # A database that does not answer fails the refresh within seconds (retried as transient), as a
            # refused connection did through SQLAlchemy, instead of holding a worker thread for the default 30 s.
            timeout=5.0,
        )
        self._opened = False

    @contextmanager
    def locked(self, integration_id: int, timeout_seconds: float) -> Iterator[LockedRow]:
        """The row locked until the block ends: committed if `commit()` was called, rolled back otherwise.

        Raises `LockTimeout` when the row stayed locked past `timeout_seconds`, `IntegrationNotFound`;
        psycopg's `OperationalError` when the database cannot be reached.
        """
        if not self._opened:
            self._pool.open(wait=False)
            self._opened = True
        ms = max(1, int(timeout_seconds * 1000))
        sql = (f"BEGIN; SET LOCAL lock_timeout = {ms:d}; " + _SELECT_SQL.format(id=int(integration_id))).encode()
        for attempt in (1, 2):
            conn = self._pool.getconn()
            try:
                found = _first_row(conn, sql, integration_id, timeout_seconds, skip=2)
            except psycopg.OperationalError:
                self._release(conn)
                if attempt == 1 and conn.broken:
                    # The server dropped it while it was idle in the pool (nothing was done on it), and likely
                    # every other idle one too (a restart): the pool pings those and drops the dead, then again.
                    self._pool.check()
                    continue
                raise
            except BaseException:
                self._release(conn)
                raise
            break
        try:
            if found is None:
                raise IntegrationNotFound(f"integration {integration_id} does not exist")
            yield LockedRow(conn, *_as_row(found))
        finally:
            self._release(conn)

    def close(self) -> None:
        if self._opened:
            self._pool.close()

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        # Whatever the block did not commit is rolled back here (the pool would too, on a thread of its own).
        if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.execute(b"ROLLBACK")
            except psycopg.Error:
                pass  # a broken connection: the pool drops it
        self._pool.putconn(conn)


def _first_row(
    conn: psycopg.Connection[Any], sql: bytes, integration_id: int, timeout_seconds: float, *, skip: int
) -> tuple[Any, ...] | None:
    """Run the statements of `sql`; the first row of the result after the first `skip` (those of BEGIN, SET)."""
    with conn.cursor() as cur:
        try:
            cur.execute(sql)
            for _ in range(skip):
                cur.nextset()
            return cur.fetchone()
        except psycopg.errors.LockNotAvailable:
            raise LockTimeout(f"integration {integration_id} stayed locked for over {timeout_seconds:g}s") from None


def lock_row(session: Session, integration_id: int, timeout_seconds: float) -> tuple[Integration, dict[str, Any]]:
    """Lock the integration's row for the transaction and read it: a transient row and its values as read.

    Raises `LockTimeout` when the row stayed locked past `timeout_seconds`, `IntegrationNotFound`.
    """
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        stmt = select(_TABLE).where(_TABLE.c.id == integration_id).with_for_update()
        values = dict(locked_select(session, stmt, integration_id, timeout_seconds)._mapping)
        return Integration(**values), values
    ms = max(1, int(timeout_seconds * 1000))
    # Integers only are formatted in: the two statements go as one simple query, one round trip.
    sql = f"SET LOCAL lock_timeout = {ms:d}; " + _SELECT_SQL.format(id=int(integration_id))
    found = _first_row(_driver(session), sql.encode(), integration_id, timeout_seconds, skip=1)
    if found is None:
        raise IntegrationNotFound(f"integration {integration_id} does not exist")
    return _as_row(found)


def write_changes(session: Session, row: Integration, read: dict[str, Any]) -> None:
    """One UPDATE of the columns whose value differs from what was read; nothing when none changed."""
    changed = _changes(row, read)
    if not changed:
        return
    if session.connection().dialect.name != "postgresql":
        session.execute(update(_TABLE).where(_TABLE.c.id == row.id).values(changed))
        return
    # Column names come from the table, never from data; the values are parameters.
    sql = _UPDATE_SQL.format(sets=", ".join(f"{key} = %s" for key in changed))
    with _driver(session).cursor() as cur:
        cur.execute(sql.encode(), [*changed.values(), row.id])


def _as_row(found: tuple[Any, ...]) -> tuple[Integration, dict[str, Any]]:
    values = {key: _utc(value) for key, value in zip(_COLUMNS, found, strict=True)}
    return Integration(**values), values


def _changes(row: Integration, read: dict[str, Any]) -> dict[str, Any]:
    changed = {key: value for key in _COLUMNS if (value := getattr(row, key)) != read[key]}
    if changed:
        changed["updated_at"] = utcnow()
    return changed


def _driver(session: Session) -> psycopg.Connection[Any]:
    driver: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    return driver


def _utc(value: Any) -> Any:
    # What UTCDateTime gives the ORM: aware datetimes in UTC (psycopg's are in the session's time zone).
    return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else value
