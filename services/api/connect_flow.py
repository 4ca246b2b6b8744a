"""A connect started by the JSON API: a first-party link that only its user's signed-in browser can open.

`POST /integrations/google/connect` stores a pending flow (an `OAuthState` row keyed by the hash of a
random flow token, `awaiting_browser`) and answers `PUBLIC_BASE_URL/connect/google?flow=...`. Opened by a
browser signed in as that user, the flow becomes a real OAuth state bound to that browser's session (a new
state and PKCE pair; the flow token stops working) and the browser goes on to Google. The callback then
insists on that session (oauth_flow.browser_problem), so the link is useless to anyone it is sent to.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy import select

from common.bootstrap import Container
from common.models import OAuthState, User, utcnow
from common.web_sessions import SignedIn
from services.api.oauth_flow import STATE_TTL, add_state, state_hash

FLOW_PATH = "/connect/google"


@dataclass(frozen=True)
class Waiting:
    """The flow cannot go on in this browser: sign in as its user (named, masked, for the page)."""

    masked_email: str | None


def start_connect_flow(c: Container, *, user_id: int, login_hint: str | None, now: dt.datetime | None = None) -> str:
    """Store a pending flow for `user_id` (10 minutes, single-use) and return its first-party URL."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with c.sessions.begin() as s:
        s.add(
            OAuthState(
                state_hash=state_hash(token),
                user_id=user_id,
                code_verifier="",
                created_at=now,
                expires_at=now + STATE_TTL,
                awaiting_browser=True,
                login_hint=login_hint,
            )
        )
    return flow_url(c.settings.public_base_url, token)


def flow_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{FLOW_PATH}?{urlencode({'flow': token})}"


def open_connect_flow(c: Container, token: str, browser: SignedIn | None) -> str | Waiting | None:
    """Google's URL when `browser` is signed in as the flow's user (the flow is then bound to its session);
    Waiting when another browser or nobody is signed in; None when the flow is unknown, used or expired."""
    if not token or len(token) > 256:
        return None
    now = utcnow()
    with c.sessions.begin() as s:
        row = s.execute(
            select(OAuthState).where(OAuthState.state_hash == state_hash(token)).with_for_update()
        ).scalar_one_or_none()
        if row is None or not row.awaiting_browser or row.used_at is not None or row.expires_at <= now:
            return None
        if browser is None or browser.user_id != row.user_id:
            email = s.execute(select(User.email).where(User.id == row.user_id)).scalar_one_or_none()
            return Waiting(mask_email(email))
        s.delete(row)
        state, pkce = add_state(s, user_id=row.user_id, integration_id=None, session_hash=browser.session_hash, now=now)
        hint = row.login_hint
    return c.oauth.authorization_url(redirect_uri=c.settings.redirect_uri, state=state, pkce=pkce, login_hint=hint)


def mask_email(email: str | None) -> str | None:
    """`o•••@acme.example`: enough for its owner to recognise, little for anyone else holding the link."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"
