"""Browser sessions for tests that drive the connect flow with an HTTP client instead of a browser."""

from __future__ import annotations

import html
import re
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from common.bootstrap import Container
from common.models import utcnow
from common.users import authenticate
from common.web_sessions import open_session
from services.api.web.session import PLAIN_COOKIE, SECURE_COOKIE
from tests.support.notify import Mailbox
from tests.support.polling import wait_for


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


SIGN_IN_LINK = re.compile(r"https?://\S+/sign-in/link\?token=\S+")
FORM_TOKEN = re.compile(r'name="token" value="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in_link(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    found = SIGN_IN_LINK.search(str(part.get_content()))
    assert found, part.get_content()
    return found.group(0)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def ask_for_link(client: httpx.Client | TestClient, box: Mailbox, address: str, timeout: float = 20) -> str:
    """Submit the sign-in form and wait for the emailed link (a real SMTP server's mailbox)."""
    before = len(box.to(address))
    resp = client.post("/sign-in", data={"email": address})
    assert resp.status_code == 200, resp.text
    msgs = wait_for(lambda: (m := box.to(address)) and len(m) > before and m, timeout, "the sign-in email")
    return sign_in_link(msgs[-1])


def follow_link(client: httpx.Client | TestClient, link: str) -> httpx.Response:
    """Open the link's page and press its one button, like a person; the POST's answer."""
    page = client.get(path_of(link))
    assert page.status_code == 200, page.text
    token = FORM_TOKEN.search(page.text)
    assert token, page.text
    return client.post("/sign-in/link", data={"token": html.unescape(token.group(1))}, follow_redirects=False)


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, page
    return html.unescape(found.group(1))
