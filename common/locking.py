"""The per-integration lock, held for the length of one database transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from common.errors import IntegrationNotFound, LockTimeout
from common.models import Integration


def lock_integration(session: Session, integration_id: int, timeout_seconds: float) -> Integration:
    """Lock the integration's row until the transaction ends and return it freshly read.

    PostgreSQL: `SELECT ... FOR UPDATE` under a transaction-local `lock_timeout`, released at commit or
    rollback (never a session-level lock, which would outlive a rollback in the pool). SQLite: a no-op
    write first, which takes the database's write lock for the transaction, the standalone equivalent.
    """
    stmt = (
        select(Integration)
        .where(Integration.id == integration_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row: Integration = locked_select(session, stmt, integration_id, timeout_seconds)[0]
    return row


def locked_select(session: Session, stmt: Select[Any], integration_id: int, timeout_seconds: float) -> Row[Any]:
    """Run `stmt` (a `SELECT ... FOR UPDATE` of the integration's row) under the lock's timeout: its one row.

    Raises `LockTimeout` when the row stayed locked, `IntegrationNotFound` when there is none.
    """
    dialect = session.get_bind().dialect.name
    try:
        if dialect == "postgresql":
            ms = max(1, int(timeout_seconds * 1000))
            session.execute(text(f"SET LOCAL lock_timeout = {ms}"))
        else:
            _sqlite_write_lock(session, integration_id, timeout_seconds)
        row = session.execute(stmt).one_or_none()
    except OperationalError as exc:
        if _is_lock_timeout(exc):
            raise LockTimeout(f"integration {integration_id} stayed locked for over {timeout_seconds:g}s") from None
        raise
    if row is None:
        raise IntegrationNotFound(f"integration {integration_id} does not exist")
    return row


def _sqlite_write_lock(session: Session, integration_id: int, timeout_seconds: float) -> None:
    # busy_timeout belongs to the connection: wait no longer than asked here, then put the pool's value back.
    previous = int(session.execute(text("PRAGMA busy_timeout")).scalar_one())
    session.execute(text(f"PRAGMA busy_timeout = {max(1, int(timeout_seconds * 1000))}"))
    try:
        session.execute(text("UPDATE integrations SET id = id WHERE id = :id"), {"id": integration_id})
    finally:
        session.execute(text(f"PRAGMA busy_timeout = {previous}"))


def _is_lock_timeout(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    return code == "55P03" or "database is locked" in str(exc.orig)
