"""Bench data: one user owning N integrations with real grants at the fake, written with COPY."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from common.cipher import TokenCipher
from common.db import make_engine, make_sessionmaker
from common.users import create_user

DUE_IN = dt.timedelta(minutes=30)  # due for the nightly run (expires within 24 h), like every hour-long token
NOT_DUE_IN = dt.timedelta(days=2)
_COLUMNS = (
    "id, user_id, platform, display_name, status, auth_type, access_token_enc, refresh_token_enc, "
    "token_expires_at, granted_scopes, external_account_id, external_account_email, needs_reauth, "
    "refresh_failure_count, created_at, updated_at"
)
_SCOPES = "email https://www.googleapis.com/auth/business.manage openid"


@dataclass
class Fleet:
    """The seeded integrations: ids 1..n, the owner's API key and each id's refresh token at the fake."""

    user_id: int
    api_key: str
    refresh_tokens: dict[int, str]
    seconds: float


def seed(database_url: str, cipher: TokenCipher, grants: list[tuple[str, str]]) -> Fleet:
    """One user, then one active integration per (google email, refresh token) grant, ids 1..len(grants)."""
    started = time.perf_counter()
    engine = make_engine(database_url, pool_size=1)
    try:
        user_id, api_key = create_user(make_sessionmaker(engine), "bench-owner@example.com")
        now = dt.datetime.now(dt.UTC)
        expires = now + DUE_IN
        tokens: dict[int, str] = {}
        raw: Any = engine.raw_connection()
        try:
            with raw.cursor() as cur, cur.copy(f"COPY integrations ({_COLUMNS}) FROM STDIN") as copy:
                for iid, (email, refresh_token) in enumerate(grants, start=1):
                    tokens[iid] = refresh_token
                    access = cipher.encrypt("ya29.expiring-placeholder", integration_id=iid, field="access_token")
                    refresh = cipher.encrypt(refresh_token, integration_id=iid, field="refresh_token")
                    row = (iid, user_id, "google", f"Bench {iid}", "active", "oauth2", access, refresh, expires)
                    copy.write_row((*row, _SCOPES, f"acct-{iid}", email, False, 0, now, now))
            raw.commit()
        finally:
            raw.close()
        with engine.begin() as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('integrations', 'id'), :n)"), {"n": len(grants)})
            conn.execute(text("ANALYZE integrations"))
    finally:
        engine.dispose()
    return Fleet(user_id, api_key, tokens, time.perf_counter() - started)


def make_due(engine: Engine, first: int, last: int) -> None:
    """Integrations first..last expire in 30 minutes (due tonight), every other one in two days."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE integrations SET last_refreshed_at = NULL, token_expires_at = "
                "CASE WHEN id BETWEEN :a AND :b THEN CAST(:due AS timestamptz) ELSE CAST(:later AS timestamptz) END"
            ),
            {"a": first, "b": last, "due": now + DUE_IN, "later": now + NOT_DUE_IN},
        )
        conn.execute(text("ANALYZE integrations"))


def refreshed_count(engine: Engine) -> tuple[int, int, dt.datetime | None]:
    """(integrations refreshed since the last make_due, integrations in error, time of the last refresh)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(last_refreshed_at), count(*) FILTER (WHERE last_sync_status = 'error'), "
                "max(last_refreshed_at) FROM integrations"
            )
        ).one()
    return int(row[0]), int(row[1]), row[2]


def bulk_rows(engine: Engine, user_id: int, first: int, last: int) -> float:
    """Insert due integrations first..last with INSERT ... SELECT generate_series (fan-out; never consumed)."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO integrations ({_COLUMNS}) "
                "SELECT g, :user, 'google', 'Fan-out ' || g, 'active', 'oauth2', NULL, 'not-a-real-token', "
                "now() + interval '30 minutes', :scopes, 'fan-' || g, NULL, false, 0, now(), now() "
                "FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS g"
            ),
            {"user": user_id, "scopes": _SCOPES, "a": first, "b": last},
        )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE integrations"))
    return time.perf_counter() - started
