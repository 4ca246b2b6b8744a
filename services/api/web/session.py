"""The browser session: cookie in, `SignedIn` out; signing in (always a fresh id) and out; CSRF checks.

The cookie holds a random id (HttpOnly, SameSite=Lax, Secure and `__Host-` prefixed when PUBLIC_BASE_URL
is https); the `web_sessions` table holds its SHA-256, so signing out revokes it on the server.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from common.bootstrap import Container
from common.config import Settings
from common.models import utcnow
from common.web_sessions import SESSION_TTL, SignedIn, csrf_matches, find_session, open_session, revoke_session

PLAIN_COOKIE = "session"
SECURE_COOKIE = "__Host-session"


def _secure(settings: Settings) -> bool:
    return settings.public_base_url.lower().startswith("https://")


def cookie_name(settings: Settings) -> str:
    return SECURE_COOKIE if _secure(settings) else PLAIN_COOKIE


def session_cookie(request: Request) -> str:
    """The raw session id the browser sent (empty when none)."""
    settings = _container(request).settings
    return request.cookies.get(cookie_name(settings), "")


def current_session(c: Container, raw: str) -> SignedIn | None:
    """The live session for a raw cookie value (blocking: call it in a worker thread)."""
    if not raw:
        return None
    with c.sessions() as s:
        return find_session(s, raw, utcnow())


async def signed_in(request: Request) -> SignedIn | None:
    """The request's live session, or None."""
    c, raw = _container(request), session_cookie(request)
    return await anyio.to_thread.run_sync(current_session, c, raw) if raw else None


def start_session(c: Container, *, user_id: int | None, operator: bool = False, replacing: str = "") -> str:
    """Open a new session (revoking the one the browser had: no fixation) and return its raw id.

    Blocking. The reconnect link's POST calls this (with `set_session_cookie`) to sign the browser in.
    """
    now = utcnow()
    with c.sessions.begin() as s:
        if replacing:
            old = find_session(s, replacing, now)
            if old is not None:
                revoke_session(s, old.session_hash, now)
        return open_session(s, user_id=user_id, operator=operator, now=now)


def set_session_cookie(response: Response, raw: str, settings: Settings) -> None:
    response.set_cookie(
        cookie_name(settings),
        raw,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        secure=_secure(settings),
        httponly=True,
        samesite="lax",
    )


async def sign_in_response(request: Request, response: Response, user_id: int) -> Response:
    """Sign the browser of `request` in as `user_id` on `response` (a fresh session id; the old one revoked)."""
    c = _container(request)
    old = session_cookie(request)
    raw = await anyio.to_thread.run_sync(lambda: start_session(c, user_id=user_id, replacing=old))
    set_session_cookie(response, raw, c.settings)
    return response


async def sign_out(request: Request, response: Response, session: SignedIn) -> Response:
    c = _container(request)

    def revoke() -> None:
        with c.sessions.begin() as s:
            revoke_session(s, session.session_hash, utcnow())

    await anyio.to_thread.run_sync(revoke)
    response.delete_cookie(cookie_name(c.settings), path="/", secure=_secure(c.settings), httponly=True)
    return response


def from_this_site(request: Request) -> bool:
    """False for a form another site submitted (by the browser's Origin / Sec-Fetch-Site headers).

    Guards the forms that work without a session's CSRF token, the sign-in link's above all: a page
    elsewhere must not sign a victim's browser in with the attacker's own link (login CSRF).
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or one too old to say; the session's CSRF token still guards the rest
    base = urlsplit(_container(request).settings.public_base_url)
    return origin.rstrip("/").lower() == f"{base.scheme}://{base.netloc}".lower()


def csrf_ok(session: SignedIn, form_value: object) -> bool:
    return isinstance(form_value, str) and csrf_matches(session.csrf_token, form_value)


def _container(request: Request) -> Container:
    api = getattr(request.app.state, "api", None)
    container = api.container if api is not None else request.app.state.container
    assert isinstance(container, Container)
    return container
