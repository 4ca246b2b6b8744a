"""Engines and sessions, built by each service's bootstrap (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

# A database that did not answer or dropped the connection: through SQLAlchemy, or straight from psycopg on the
# refresh's own connections (common.locked_row). Transient: the state is unchanged, the work is retried.
DATABASE_ERRORS = (OperationalError, psycopg.OperationalError)


def make_engine(url: str, *, pool_size: int = 10, **kwargs: Any) -> Engine:
    """An engine for PostgreSQL (psycopg 3) or SQLite (WAL, busy timeout, foreign keys on)."""
    if url.startswith("sqlite"):
        create_private_sqlite(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's implicit transactions are off (isolation_level=None); we emit BEGIN ourselves.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # Up to 2 x pool_size connections, opened on demand and kept: overflow connections would be closed
    # at check-in, so a load above pool_size would open (fork a PostgreSQL backend) and close one per use.
    return create_engine(url, pool_size=2 * pool_size, max_overflow=0, pool_pre_ping=True, pool_recycle=1800, **kwargs)


def psycopg_conninfo(url: str) -> str:
    """A PostgreSQL SQLAlchemy URL (`postgresql+psycopg://...`) as the connection string psycopg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" and not database.startswith("file:") else None


def create_private_sqlite(url: str) -> None:
    """Create a missing SQLite file 0600, and its missing folder 0700: it holds emails, encrypted tokens and
    PKCE verifiers. SQLite gives its -wal and -shm files the database file's mode. Existing files keep theirs."""
    path = sqlite_file(url)
    if path is None or path.exists():
        return
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # another process created it a moment ago
        pass


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")
