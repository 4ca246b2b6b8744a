"""Reach the database before a service starts: say PostgreSQL's reason, stop where retrying cannot help.

A refused login, a missing role or database, or a schema that was never migrated is a configuration problem:
the service exits with one line naming it. A server that is not (yet) answering may be an outage: one line per
attempt, with backoff, as for RabbitMQ (common.broker_check).
"""

from __future__ import annotations

import re
import threading

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from common.reachability import Unreachable, wait_until_reachable

_FATAL = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "authentication failed",
)
_SERVER_SAYS = re.compile(r"(?:FATAL|ERROR):\s+(.{1,300})")


def where(url: str) -> str:
    """`host:port/database` of a database URL, never its credentials."""
    u = make_url(url)
    if u.drivername.startswith("sqlite"):
        return u.database or ":memory:"
    return f"{u.host or 'localhost'}:{u.port or 5432}/{u.database}"


def describe(exc: BaseException, url: str) -> Unreachable:
    """The problem behind a database error, in PostgreSQL's (or SQLite's) own words."""
    server = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    orig = getattr(exc, "orig", None) or exc
    message = str(orig).strip()
    first = message.splitlines()[0] if message else type(orig).__name__
    said = _SERVER_SAYS.search(message)
    cause = said.group(1).strip() if said else first
    if getattr(orig, "sqlstate", None) in ("42P01", "42703") or first.startswith(("no such table", "no such column")):
        return Unreachable(
            True, "the schema is missing or out of date", where(url), "run `integrations db upgrade`", server=server
        )
    if any(marker in message for marker in _FATAL):
        return Unreachable(True, cause, where(url), "check DATABASE_URL (user, password, database name)", server=server)
    if "refused" in message.lower():
        return Unreachable(
            False, "connection refused", where(url), "is PostgreSQL running on that port?", server=server
        )
    return Unreachable(False, cause[:300], where(url), server=server)


def check(url: str) -> None:
    """Connect once and read the schema's main table; raises what the driver raised."""
    args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    engine = create_engine(url, connect_args=args, poolclass=None)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1 FROM integrations WHERE 1 = 0"))
    finally:
        engine.dispose()


def wait_for_database(url: str, service: str, stop: threading.Event) -> Unreachable | None:
    """Block until the database answers with our schema (None), a fatal problem (returned), or `stop` is set."""
    return wait_until_reachable("database", lambda: check(url), lambda exc: describe(exc, url), service, stop)
