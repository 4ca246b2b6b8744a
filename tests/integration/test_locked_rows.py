"""The refresh's own PostgreSQL pool (common.locked_row.LockedRows): used, committed, rolled back, and healed."""

from __future__ import annotations

from sqlalchemy import text

from common.bootstrap import Container
from common.errors import TransientProviderError
from common.locked_row import APPLICATION_NAME
from services.fake_google import FakeGoogleServer
from tests.support.flows import connect, expire_soon, load, new_email


def _refresh_sessions(c: Container, state: str | None = None) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = :app"
    if state:
        sql += " AND state = :state"
    with c.engine.connect() as conn:
        return int(conn.execute(text(sql), {"app": APPLICATION_NAME, "state": state}).scalar_one())


def test_a_refresh_locks_and_writes_on_the_refresh_pool(pg: Container, google: FakeGoogleServer) -> None:
    email = new_email("g")
    iid = connect(pg, google_email=email)
    expire_soon(pg, iid)
    before = load(pg, iid)
    assert pg.tokens.locked_rows is not None
    assert pg.tokens.refresh(iid, 3600) is True
    after = load(pg, iid)
    assert after.access_token_enc != before.access_token_enc and after.last_refreshed_at is not None
    assert after.token_expires_at is not None and before.token_expires_at is not None
    assert after.token_expires_at > before.token_expires_at
    assert google.fake.refresh_calls_for(email) == 1
    # The lock, the read and the write went through the pool, and its connection went back idle (committed).
    assert _refresh_sessions(pg) >= 1
    assert _refresh_sessions(pg, "idle in transaction") == 0


def test_a_failed_call_leaves_the_row_and_no_open_transaction(pg: Container, google: FakeGoogleServer) -> None:
    email = new_email("g")
    iid = connect(pg, google_email=email)
    expire_soon(pg, iid)
    before = load(pg, iid)
    google.fake.fail_next("token", 503)
    try:
        pg.tokens.refresh(iid, 3600)
    except TransientProviderError:
        pass
    else:
        raise AssertionError("a 503 from the token endpoint must raise TransientProviderError")
    after = load(pg, iid)
    assert (after.access_token_enc, after.token_expires_at) == (before.access_token_enc, before.token_expires_at)
    assert _refresh_sessions(pg, "idle in transaction") == 0, "the lock was rolled back and released"
    assert pg.tokens.refresh(iid, 3600) is True


def test_a_pooled_connection_the_server_dropped_is_replaced(pg: Container, google: FakeGoogleServer) -> None:
    email = new_email("g")
    iid = connect(pg, google_email=email)
    expire_soon(pg, iid)
    assert pg.tokens.refresh(iid, 3600) is True
    with pg.engine.begin() as conn:  # as a server restart would: every idle pooled session is gone
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :app"
            ),
            {"app": APPLICATION_NAME},
        ).scalar_one()
    assert killed >= 1
    expire_soon(pg, iid)
    assert pg.tokens.refresh(iid, 3600) is True, "the dead connection was replaced, the refresh not failed"
    assert google.fake.refresh_calls_for(email) == 2
