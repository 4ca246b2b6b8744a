"""Browser sessions for tests that drive the connect flow with an HTTP client instead of a browser."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from common.bootstrap import Container
from common.models import utcnow
from common.users import authenticate
from common.web_sessions import open_session
from services.api.web.session import PLAIN_COOKIE, SECURE_COOKIE


def container_of(client: httpx.Client | TestClient) -> Container:
    app: Any = getattr(client, "app", None)
    assert app is not None, "pass `sessions` for a client of a real server process"
    container = app.state.api.container
    assert isinstance(container, Container)
    return container


def sign_in(
    client: httpx.Client | TestClient, sessions: sessionmaker[Session], user_id: int, *, https: bool = False
) -> str:
    """Give `client` a fresh session of `user_id` (what following an emailed sign-in link does); its raw id."""
    with sessions.begin() as s:
        raw = open_session(s, user_id=user_id, operator=False, now=utcnow())
    name = SECURE_COOKIE if https else PLAIN_COOKIE
    client.cookies.delete(name)
    client.cookies.set(name, raw)  # no domain: sent to whichever host the client talks to
    return raw


def user_of(sessions: sessionmaker[Session], headers: dict[str, str]) -> int:
    key = headers["Authorization"].partition(" ")[2]
    with sessions() as s:
        user = authenticate(s, key)
        assert user is not None, "headers with a valid API key"
        return user.id


def open_flow(
    client: httpx.Client | TestClient,
    authorization_url: str,
    headers: dict[str, str],
    sessions: sessionmaker[Session] | None = None,
) -> str:
    """Open the API's first-party authorization_url in `client` as the key's owner; Google's URL it leads to.

    Signs the client in as that user first when it is not already (the page then shows the sign-in form).
    """
    resp = client.get(authorization_url, follow_redirects=False)
    if resp.status_code == 200 and 'action="/sign-in"' in resp.text:
        sessions = sessions or container_of(client).sessions
        sign_in(client, sessions, user_of(sessions, headers), https=authorization_url.startswith("https:"))
        resp = client.get(authorization_url, follow_redirects=False)
    assert resp.status_code == 302, resp.text
    return str(resp.headers["location"])
