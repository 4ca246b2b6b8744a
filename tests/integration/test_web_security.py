"""The web pages' security: the connect-hijack replay, CSRF, another user's integration, session fixation,
sign-in link replay, no account enumeration, sign-out revocation. Real PostgreSQL, RabbitMQ, SMTP, fake Google."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from common.config import Secret
from common.models import Integration, User, utcnow
from common.tasks import SYNC_INTEGRATION
from common.web_sessions import find_session
from tests.conftest import TEST_ADMIN_KEY, make_settings
from tests.support.api import Api, build_app, close, consent, drain, start
from tests.support.flows import new_email
from tests.support.notify import Mailbox, running_notifier, smtp_server
from tests.support.web import ask_for_link, csrf_of, follow_link, path_of, sign_in

pytest_plugins = ["tests.support.api"]
pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@dataclass
class Web:
    api: Api
    box: Mailbox

    def browser(self) -> TestClient:
        """A browser of its own (its own cookie jar) on the same app."""
        return TestClient(self.api.client.app)

    def signed_in(self, user_id: int) -> TestClient:
        b = self.browser()
        sign_in(b, self.api.c.sessions, user_id)
        return b

    def integrations_of(self, user_id: int) -> list[int]:
        with self.api.c.sessions() as s:
            return list(s.scalars(select(Integration.id).where(Integration.user_id == user_id)))


@pytest.fixture
def web(api: Api, pg_url: str, google) -> Iterator[Web]:
    with smtp_server() as (box, port):
        settings = make_settings(pg_url, google, broker_url=api.amqp_url, smtp_url=Secret(f"smtp://127.0.0.1:{port}"))
        with running_notifier(settings):
            yield Web(api, box)


def email_of(web: Web, user_id: int) -> str:
    with web.api.c.sessions() as s:
        user = s.get(User, user_id)
        assert user is not None
        return user.email


# -- the connect hijack ------------------------------------------------------------------------------


def test_the_reviewers_connect_hijack_attaches_nothing(api: Api) -> None:
    """The attacker starts a connect with their API key and sends the authorization URL to the victim, who
    consents as herself in her own browser: nothing lands in the attacker's account."""
    attacker_id, attacker = api.user()
    url = start(api.client, attacker)  # everything the attacker can get: Google's URL, state included
    victim_browser = TestClient(api.client.app)
    query = consent(url)  # the victim consents at Google
    resp = victim_browser.get("/oauth/google/callback", params=query, follow_redirects=False)
    assert resp.status_code == 400, resp.text
    assert "nothing was connected" in resp.text
    with api.c.sessions() as s:
        assert s.scalars(select(Integration).where(Integration.user_id == attacker_id)).all() == []


def test_the_hijack_fails_too_when_the_victim_is_signed_in_as_herself(api: Api) -> None:
    attacker_id, attacker = api.user()
    victim_id, _ = api.user()
    url = start(api.client, attacker)
    victim_browser = TestClient(api.client.app)
    sign_in(victim_browser, api.c.sessions, victim_id)
    resp = victim_browser.get("/oauth/google/callback", params=consent(url), follow_redirects=False)
    assert resp.status_code == 400
    with api.c.sessions() as s:
        owners = set(s.scalars(select(Integration.user_id).where(Integration.user_id.in_([attacker_id, victim_id]))))
    assert owners == set()


def test_the_first_party_link_shows_the_sign_in_page_to_anyone_but_its_user(api: Api) -> None:
    _, attacker = api.user()
    victim_id, _ = api.user()
    resp = api.client.post("/integrations/google/connect", headers=attacker)
    link = resp.json()["authorization_url"]
    assert link.startswith(api.c.settings.public_base_url + "/connect/google?flow=")
    anonymous, victim_browser = TestClient(api.client.app), TestClient(api.client.app)
    sign_in(victim_browser, api.c.sessions, victim_id)
    for browser in (anonymous, victim_browser):
        page = browser.get(path_of(link), follow_redirects=False)
        assert page.status_code == 200 and 'action="/sign-in"' in page.text
        assert "google" not in page.headers.get("location", "")


# -- CSRF ----------------------------------------------------------------------------------------------


def test_forms_without_the_sessions_csrf_token_change_nothing(api: Api) -> None:
    user_id, headers = api.user()
    iid = api.connect(headers)
    drain(api.amqp_url, "sync")
    browser = TestClient(api.client.app)
    sign_in(browser, api.c.sessions, user_id)
    other = TestClient(api.client.app)
    sign_in(other, api.c.sessions, user_id)
    foreign_token = csrf_of(other.get("/").text)  # a real token, of another session
    for token in (None, "", "forged", foreign_token):
        data = {} if token is None else {"csrf": token}
        for path in (f"/web/integrations/{iid}/sync", f"/web/integrations/{iid}/disconnect", "/web/connect"):
            resp = browser.post(path, data=data, follow_redirects=False)
            assert resp.status_code == 403, (path, token, resp.status_code)
        assert browser.post("/sign-out", data=data, follow_redirects=False).status_code == 403
    assert [m for m in drain(api.amqp_url, "sync") if m["actor_name"] == SYNC_INTEGRATION] == []
    with api.c.sessions() as s:
        assert s.get(Integration, iid).status == "active"
    # The page's own token works.
    token = csrf_of(browser.get("/").text)
    assert (
        browser.post(f"/web/integrations/{iid}/sync", data={"csrf": token}, follow_redirects=False).status_code == 303
    )


# -- another user's integration --------------------------------------------------------------------------


def test_another_users_integration_is_a_404_on_every_page_and_form(api: Api) -> None:
    _, owner = api.user()
    iid = api.connect(owner)
    stranger_id, _ = api.user()
    browser = TestClient(api.client.app)
    sign_in(browser, api.c.sessions, stranger_id)
    token = csrf_of(browser.get("/").text)
    assert f"integration-{iid}" not in browser.get("/").text
    assert browser.get(f"/web/integrations/{iid}").status_code == 404
    assert browser.get(f"/web/integrations/{iid}/disconnect").status_code == 404
    for action in ("sync", "reconnect", "disconnect"):
        resp = browser.post(f"/web/integrations/{iid}/{action}", data={"csrf": token}, follow_redirects=False)
        assert resp.status_code == 404, action
    assert [row["id"] for row in browser.get("/web/status").json()["integrations"]] == []
    with api.c.sessions() as s:
        assert s.get(Integration, iid).status == "active"


# -- sign-in ---------------------------------------------------------------------------------------------


def test_signing_in_gives_a_new_session_id_and_revokes_the_one_the_browser_had(web: Web) -> None:
    """Session fixation: an id planted in the victim's browser (here a real session of the attacker) is never
    promoted to the victim's session."""
    attacker_id, _ = web.api.user()
    victim_id, _ = web.api.user()
    victim_email = email_of(web, victim_id)
    browser = web.browser()
    planted = sign_in(browser, web.api.c.sessions, attacker_id)
    done = follow_link(browser, ask_for_link(browser, web.box, victim_email))
    assert done.status_code == 303 and done.headers["location"].endswith("/")
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Path=/" in cookie
    fresh = cookie.split(";", 1)[0].removeprefix("session=")
    assert fresh and fresh != planted
    with web.api.c.sessions() as s:
        assert find_session(s, planted, utcnow()) is None, "the planted id no longer works"
        now = find_session(s, fresh, utcnow())
        assert now is not None and now.user_id == victim_id
    attacker_browser = web.browser()
    attacker_browser.cookies.set("session", planted)
    assert 'action="/sign-in"' in attacker_browser.get("/").text


def test_a_sign_in_link_works_once_and_opening_it_never_uses_it(web: Web) -> None:
    user_id, _ = web.api.user()
    email = email_of(web, user_id)
    browser = web.browser()
    link = ask_for_link(browser, web.box, email)
    for _ in range(3):  # a mail scanner's previews
        assert browser.get(path_of(link)).status_code == 200
    assert follow_link(browser, link).status_code == 303
    replay = web.browser()
    page = replay.get(path_of(link))
    assert page.status_code == 400 and "already been used" in page.text
    token = link.split("token=", 1)[1]
    again = replay.post("/sign-in/link", data={"token": unquote(token)}, follow_redirects=False)
    assert again.status_code == 400 and "set-cookie" not in again.headers
    assert 'action="/sign-in"' in replay.get("/").text


def test_the_sign_in_form_answers_the_same_for_an_unknown_address_and_mails_only_known_ones(web: Web) -> None:
    user_id, _ = web.api.user()
    known = email_of(web, user_id)
    unknown = new_email("nobody")
    browser = web.browser()
    a = browser.post("/sign-in", data={"email": known})
    b = browser.post("/sign-in", data={"email": unknown})
    assert a.status_code == b.status_code == 200
    assert a.text.replace(known, "X") == b.text.replace(unknown, "X")
    ask_for_link(browser, web.box, known)  # the known address gets its email
    assert web.box.to(unknown) == []


def test_signing_out_revokes_the_session_on_the_server(api: Api) -> None:
    user_id, _ = api.user()
    browser = TestClient(api.client.app)
    raw = sign_in(browser, api.c.sessions, user_id)
    token = csrf_of(browser.get("/").text)
    assert browser.post("/sign-out", data={"csrf": token}, follow_redirects=False).status_code == 303
    copy = TestClient(api.client.app)
    copy.cookies.set("session", raw)  # a copy of the cookie taken before signing out
    assert 'action="/sign-in"' in copy.get("/").text


def test_another_site_cannot_sign_a_browser_in_with_its_own_link(web: Web) -> None:
    """Login CSRF: a page elsewhere auto-submits the attacker's own (valid) sign-in token from the victim's
    browser; she would then connect her Google account into the attacker's app account."""
    attacker_id, _ = web.api.user()
    link = ask_for_link(web.browser(), web.box, email_of(web, attacker_id))
    token = unquote(link.split("token=", 1)[1])
    victim = web.browser()
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        resp = victim.post("/sign-in/link", data={"token": token}, headers=headers, follow_redirects=False)
        assert resp.status_code == 403 and "set-cookie" not in resp.headers, headers
    assert 'action="/sign-in"' in victim.get("/").text
    # From our own page the same link still works (it was not used up by the refused attempts).
    ours = victim.post(
        "/sign-in/link",
        data={"token": token},
        headers={"Origin": web.api.c.settings.public_base_url, "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert ours.status_code == 303


def test_behind_https_the_cookie_is_secure_and_host_only(pg_url: str, google, api_vhost: str) -> None:
    base = "https://app.example.test"
    app, c = build_app(make_settings(pg_url, google, broker_url=api_vhost, public_base_url=base), api_vhost)
    try:
        with TestClient(app, base_url=base) as browser:
            resp = browser.post("/admin/sign-in", data={"key": TEST_ADMIN_KEY}, follow_redirects=False)
            cookie = resp.headers["set-cookie"]
            assert resp.status_code == 303 and cookie.startswith("__Host-session=")
            assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie
            assert "Integrations by state" in browser.get("/admin").text
    finally:
        close(c)
