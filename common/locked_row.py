"""The refresh path's locked read and write, without the ORM: no identity map, no flush, no statement compile.

The row comes back as a transient `Integration` (not in the session), so the helpers that change a row
(`store_grant`, `mark_failed`) work on it unchanged; `write_changes` then sends one `UPDATE` of the
columns that changed (and `updated_at`, as the column's `onupdate` would). On PostgreSQL both go straight
to psycopg on the session's connection, inside the session's transaction: one round trip for the
transaction-local `lock_timeout` and the `SELECT ... FOR UPDATE` together, one for the `UPDATE`, with
fixed statement texts that psycopg prepares once per connection. SQLite goes through Core (`locked_select`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from common.errors import IntegrationNotFound, LockTimeout
from common.locking import locked_select
from common.models import Integration, utcnow

_TABLE: Table = Integration.__table__  # type: ignore[assignment]
_COLUMNS = tuple(c.key for c in _TABLE.columns)
# Column names from the table; the id is formatted in as an integer (`:d`) by lock_row.
_SELECT_SQL = f"SELECT {', '.join(_COLUMNS)} FROM integrations WHERE id = {{id:d}} FOR UPDATE"  # noqa: S608


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
    with _driver(session).cursor() as cur:
        try:
            cur.execute(sql.encode())
            cur.nextset()
            found = cur.fetchone()
        except psycopg.errors.LockNotAvailable:
            raise LockTimeout(f"integration {integration_id} stayed locked for over {timeout_seconds:g}s") from None
    if found is None:
        raise IntegrationNotFound(f"integration {integration_id} does not exist")
    values = {key: _utc(value) for key, value in zip(_COLUMNS, found, strict=True)}
    return Integration(**values), values


def write_changes(session: Session, row: Integration, read: dict[str, Any]) -> None:
    """One UPDATE of the columns whose value differs from what was read; nothing when none changed."""
    changed = {key: value for key in _COLUMNS if (value := getattr(row, key)) != read[key]}
    if not changed:
        return
    changed["updated_at"] = utcnow()
    if session.connection().dialect.name != "postgresql":
        session.execute(update(_TABLE).where(_TABLE.c.id == row.id).values(changed))
        return
    # Column names come from the table, never from data; the values are parameters.
    sql = f"UPDATE integrations SET {', '.join(f'{key} = %s' for key in changed)} WHERE id = %s"  # noqa: S608
    with _driver(session).cursor() as cur:
        cur.execute(sql.encode(), [*changed.values(), row.id])


def _driver(session: Session) -> psycopg.Connection[Any]:
    driver: psycopg.Connection[Any] = session.connection().connection.driver_connection  # type: ignore[assignment]
    return driver


def _utc(value: Any) -> Any:
    # What UTCDateTime gives the ORM: aware datetimes in UTC (psycopg's are in the session's time zone).
    return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else value
