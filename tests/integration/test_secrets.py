"""After real flows (successes and failures), no token Google issued is anywhere it must not be."""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import structlog
from sqlalchemy import MetaData, select, update

from common.bootstrap import Container
from common.errors import AccessTokenRejected, CipherError, IntegrationsError
from common.google_oauth import GoogleOAuthClient, GoogleOAuthConfig, TokenGrant
from common.logging import configure_logging, get_logger
from common.models import Integration
from services.fake_google import FakeGoogleServer
from tests.support.flows import REDIRECT, authorize, connect, expire_soon, new_email


@pytest.fixture(params=["pg", "lite"])
def c(request: pytest.FixtureRequest) -> Container:
    return request.getfixturevalue(request.param)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    yield stream
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def wrong_secret_client(c: Container) -> GoogleOAuthClient:
    s = c.settings
    return GoogleOAuthClient(
        GoogleOAuthConfig(
            s.google_client_id, "wrong-secret", s.google_auth_url, s.google_token_url, s.google_revoke_url
        ),
        http=c.http,
    )


def run_flows(c: Container, google: FakeGoogleServer) -> tuple[list[BaseException], list[TokenGrant]]:
    """Connect, refresh, force, break and fail in every way, logging each failure as a worker would."""
    log = get_logger("integrations.worker")
    stdlib = logging.getLogger("dramatiq.worker.WorkerThread")
    errors: list[BaseException] = []

    def attempt(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except (IntegrationsError, AssertionError) as exc:
            if isinstance(exc, AssertionError):
                raise
            errors.append(exc)
            log.exception("flow.failed", error=exc, error_repr=repr(exc))
            stdlib.error("actor failed: %r", exc, exc_info=True)

    emails = [new_email("leak") for _ in range(4)]
    ok, revoked, flaky, misconfigured = (connect(c, google_email=e) for e in emails)

    code, pkce = authorize(c, new_email("leak"))
    grant = c.oauth.exchange_code(code=code, code_verifier=pkce.verifier, redirect_uri=REDIRECT)
    assert grant.refresh_token is not None
    refreshed = c.oauth.refresh(grant.refresh_token)
    log.info("oauth.grant", grant=grant, refreshed=refreshed)

    for iid in (ok, revoked, flaky, misconfigured):
        expire_soon(c, iid)
    c.tokens.ensure_fresh_token(ok, 300)
    assert c.tokens.refresh(ok, 86400) is True
    token = c.tokens.ensure_fresh_token(ok, 300)
    google.fake.expire_access_tokens(emails[0])
    attempt(lambda: list(c.gbp.accounts(token)))
    assert c.tokens.ensure_fresh_token(ok, 300, rejected_token=token) != token

    google.fake.revoke_user(emails[1])
    attempt(lambda: c.tokens.ensure_fresh_token(revoked, 300))
    google.fake.fail_next("token", 503)
    attempt(lambda: c.tokens.ensure_fresh_token(flaky, 300))
    google.fake.fail_next("token", 429, retry_after=5)
    attempt(lambda: c.tokens.ensure_fresh_token(flaky, 300))
    google.fake.fail_next("token", 200, body='{"token_type": "Bearer"}')
    attempt(lambda: c.tokens.ensure_fresh_token(flaky, 300))
    attempt(lambda: replace(c.tokens, oauth=wrong_secret_client(c)).ensure_fresh_token(misconfigured, 300))
    attempt(lambda: c.oauth.refresh(grant.refresh_token or ""))  # works: not an error
    google.fake.revoke_refresh_token(grant.refresh_token)
    attempt(lambda: c.oauth.refresh(grant.refresh_token or ""))

    with c.sessions.begin() as s:  # a ciphertext copied to another row
        source = s.get(Integration, ok)
        assert source is not None
        s.execute(update(Integration).where(Integration.id == flaky).values(access_token_enc=source.access_token_enc))
    attempt(lambda: c.tokens.ensure_fresh_token(flaky, 0))
    assert any(isinstance(e, CipherError) for e in errors)
    assert any(isinstance(e, AccessTokenRejected) for e in errors)
    return errors, [grant, refreshed]


def every_row_as_text(c: Container) -> str:
    meta = MetaData()
    meta.reflect(bind=c.engine)
    with c.engine.connect() as conn:
        return "\n".join(repr(row) for table in meta.sorted_tables for row in conn.execute(select(table)))


def test_no_token_in_logs_errors_reprs_or_tables(
    c: Container, google: FakeGoogleServer, log_output: io.StringIO
) -> None:
    errors, grants = run_flows(c, google)
    issued = google.fake.issued_tokens()
    assert len(issued) >= 10

    logs = log_output.getvalue()
    for event in ("token.refresh.succeeded", "token.refresh.failed", "flow.failed", "actor failed", "Traceback"):
        assert event in logs, f"the flows did not log {event!r}"
    places = {
        "logs": logs,
        "errors": "\n".join(f"{e}\n{e!r}\n{''.join(traceback.format_exception(e))}" for e in errors),
        "grants": "\n".join(f"{g}\n{g!r}" for g in grants),
        "container": f"{c.settings!r} {c.cipher!r} {c.tokens!r}",
        "database": every_row_as_text(c),
    }
    for where, text in places.items():
        leaked = [t[:12] + "..." for t in issued if t in text]
        assert not leaked, f"{len(leaked)} issued tokens in {where}: {leaked[:3]}"
    assert google.fake.client_secret not in logs and "wrong-secret" not in logs
