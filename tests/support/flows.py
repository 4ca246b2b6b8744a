"""Test helpers that drive real flows: a user connecting a Google account through the fake's OAuth."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import parse_qs, urlsplit

from common.bootstrap import Container
from common.connect import complete_connection
from common.google_oauth import Pkce
from common.models import Integration
from common.users import create_user

REDIRECT = "http://127.0.0.1:8000/oauth/google/callback"


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def authorize(c: Container, google_email: str) -> tuple[str, Pkce]:
    """Run the consent step at the fake and return the authorization code it redirected back with."""
    pkce = Pkce.new()
    url = c.oauth.authorization_url(redirect_uri=REDIRECT, state="s", pkce=pkce, login_hint=google_email)
    resp = c.http.get(url, follow_redirects=False)
    assert resp.status_code == 302, resp.text
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    return query["code"][0], pkce


def connect(c: Container, google_email: str | None = None, user_id: int | None = None) -> int:
    """A new user (unless given) connects a Google account; returns the integration id."""
    if user_id is None:
        user_id, _ = create_user(c.sessions, new_email())
    code, pkce = authorize(c, google_email or new_email("g"))
    with c.sessions.begin() as s:
        done = complete_connection(
            s,
            c.oauth,
            c.cipher,
            user_id=user_id,
            code=code,
            code_verifier=pkce.verifier,
            redirect_uri=REDIRECT,
            now=dt.datetime.now(dt.UTC),
        )
    return done.integration_id


def expire_soon(c: Container, integration_id: int, seconds: float = 60) -> None:
    """Move the stored expiry so the token counts as expiring (the fake still honours it)."""
    with c.sessions.begin() as s:
        row = s.get(Integration, integration_id)
        assert row is not None
        row.token_expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def load(c: Container, integration_id: int) -> Integration:
    with c.sessions() as s:
        row = s.get(Integration, integration_id)
        assert row is not None
        return row
