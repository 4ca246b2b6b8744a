"""The reconnect link: its page's one button starts Google's consent for that integration; rejected when not genuine.

GET and HEAD only show the page (mail scanners and link previews fetch links): only the form's POST uses the link.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from common.bootstrap import Container
from common.errors import ReauthRequired
from common.models import Incident, Integration, OAuthState, utcnow
from common.reconnect_links import issue_link, make_signer
from services.api.app import create_app
from services.browser import one_form
from tests.support.flows import connect, load, new_email

pytestmark = pytest.mark.postgres


@pytest.fixture
def client(pg: Container) -> Iterator[TestClient]:
    with TestClient(create_app(pg)) as c:
        yield c


def broken(c: Container, google) -> tuple[int, str, int]:
    """An integration needing re-auth (Google revoked it): (id, Google account, open incident id)."""
    google_email = new_email("g")
    iid = connect(c, google_email)
    google.fake.revoke_user(google_email)
    with pytest.raises(ReauthRequired):
        c.tokens.refresh(iid, 86400)
    with c.sessions() as s:
        incident = s.scalars(select(Incident).where(Incident.integration_id == iid)).one()
    return iid, google_email, incident.id


def link_for(c: Container, iid: int, incident_id: int | None = None, ttl_seconds: int = 7 * 86400) -> str:
    with c.sessions.begin() as s:
        return issue_link(
            s,
            make_signer(c.settings.token_encryption_keys.reveal()),
            c.settings.public_base_url,
            integration_id=iid,
            incident_id=incident_id,
            now=utcnow(),
            ttl_seconds=ttl_seconds,
        )


def press(client: TestClient, link: str) -> httpx.Response:
    """Open the link's page and submit its one form, fields as given (what a person's click does)."""
    page = client.get(link, follow_redirects=False)
    assert page.status_code == 200, page.text
    form = one_form(page.text, str(page.url))
    return client.request(form.method, form.action, data=form.fields, follow_redirects=False)


def test_head_and_get_never_use_the_link_only_the_pages_form_does(pg, google, client):
    iid, google_email, incident_id = broken(pg, google)
    link = link_for(pg, iid, incident_id)
    head = client.head(link, follow_redirects=False)
    assert head.status_code == 200 and "location" not in head.headers
    pages = [client.get(link, follow_redirects=False) for _ in range(2)]
    for page in pages:
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        text = page.text
        assert "location" not in page.headers and "<script" not in text.lower() and "style=" not in text.lower()
        assert google_email not in text, "the Google account is named only in the redirect after the POST"
        assert pg.settings.google_auth_url.split("/")[2] not in text, "no Google URL on the page"
        assert "Google Business Profile" in text, "the page names the integration"
        form = one_form(text, str(page.url))
        assert form.method == "POST" and form.action.endswith(f"/integrations/{iid}/reconnect")
        assert set(form.fields) == {"token"}
    with pg.sessions() as s:
        assert s.scalars(select(OAuthState).where(OAuthState.integration_id == iid)).all() == []
    to_google = client.request(form.method, form.action, data=form.fields, follow_redirects=False)
    assert to_google.status_code == 303
    assert parse_qs(urlsplit(to_google.headers["location"]).query)["login_hint"] == [google_email]
    again = client.request(form.method, form.action, data=form.fields, follow_redirects=False)
    assert again.status_code == 400 and "already been used" in again.text
    assert "location" not in again.headers


def test_a_post_without_the_token_field_uses_nothing(pg, google, client):
    iid, _, incident_id = broken(pg, google)
    link = link_for(pg, iid, incident_id)
    token = link.split("?token=")[1]
    for options in (
        {"data": {}},
        {"content": b"token", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        {"content": b'{"token": "x"}', "headers": {"content-type": "application/json"}},
        {"data": {"token": "garbage"}},
    ):
        resp = client.post(f"/integrations/{iid}/reconnect", follow_redirects=False, **options)
        assert resp.status_code == 400 and "location" not in resp.headers, options
    # The token in the query string alone is what a fetched link carries: it is not a submitted form.
    resp = client.post(f"/integrations/{iid}/reconnect?token={token}", follow_redirects=False)
    assert resp.status_code == 400
    assert press(client, link).status_code == 303


def test_link_starts_consent_for_the_same_integration_and_the_callback_repairs_it(pg, google, client):
    iid, google_email, incident_id = broken(pg, google)
    user_id = load(pg, iid).user_id
    resp = press(client, link_for(pg, iid, incident_id))
    assert resp.status_code == 303
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["login_hint"] == [google_email] and query["prompt"] == ["consent"]
    assert query["code_challenge_method"] == ["S256"]
    with pg.sessions() as s:
        state = s.scalars(select(OAuthState).where(OAuthState.integration_id == iid)).one()
        assert (state.user_id, state.used_at) == (user_id, None)
        assert (state.expires_at - state.created_at).total_seconds() == 600

    consent = httpx.get(resp.headers["location"], follow_redirects=False, timeout=10)
    back = urlsplit(consent.headers["location"])
    # Google redirects to PUBLIC_BASE_URL's callback: the browser the button signed in sends its session there.
    done = client.get(f"{pg.settings.public_base_url}{back.path}?{back.query}")
    assert done.status_code == 200 and "is connected again" in done.text

    row = load(pg, iid)
    assert (row.needs_reauth, row.error_kind, row.error_reason, row.last_sync_status) == (False, None, None, None)
    assert pg.tokens.ensure_fresh_token(iid, 0).startswith("ya29.")
    with pg.sessions() as s:
        assert s.get(Incident, incident_id).closed_at is not None
        owned = s.scalar(select(func.count()).select_from(Integration).where(Integration.user_id == user_id))
    assert owned == 1  # the same integration was updated, no second one created


def test_a_link_works_once(pg, google, client):
    iid, _, incident_id = broken(pg, google)
    link = link_for(pg, iid, incident_id)
    assert press(client, link).status_code == 303
    again = client.get(link, follow_redirects=False)
    assert again.status_code == 400
    assert again.headers["content-type"].startswith("text/html")
    assert "already been used" in again.text


def test_an_expired_link_is_rejected(pg, google, client):
    iid, _, incident_id = broken(pg, google)
    resp = client.get(link_for(pg, iid, incident_id, ttl_seconds=-60), follow_redirects=False)
    assert resp.status_code == 400 and "has expired" in resp.text
    assert load(pg, iid).needs_reauth


def test_a_tampered_link_is_rejected(pg, google, client):
    iid, _, incident_id = broken(pg, google)
    link = link_for(pg, iid, incident_id)
    base, token = link.split("?token=")
    body, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["exp"] += 365 * 86400  # try to extend it
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{signature}", token[:-6], "garbage"):
        resp = client.get(f"{base}?token={bad}", follow_redirects=False)
        assert resp.status_code == 400 and "not valid" in resp.text, bad
    assert client.get(base, follow_redirects=False).status_code == 400  # no token at all
    assert press(client, link).status_code == 303  # the genuine link still works


def test_a_link_only_opens_its_own_integration(pg, google, client):
    iid, _, incident_id = broken(pg, google)
    other, _, _ = broken(pg, google)
    token = link_for(pg, iid, incident_id).split("?token=")[1]
    resp = client.get(f"/integrations/{other}/reconnect?token={token}", follow_redirects=False)
    assert resp.status_code == 400 and "different connection" in resp.text
    with pg.sessions() as s:
        assert s.scalars(select(OAuthState).where(OAuthState.integration_id == other)).all() == []


def test_a_link_to_a_working_integration_has_nothing_to_do(pg, google, client):
    iid = connect(pg)
    resp = client.get(link_for(pg, iid), follow_redirects=False)
    assert resp.status_code == 200 and "connected and working" in resp.text
    assert "<form" not in resp.text


def test_pressing_the_button_signs_the_browser_in_and_only_that_browser_may_finish(pg, google, client):
    iid, _google_email, incident_id = broken(pg, google)
    pressed = press(client, link_for(pg, iid, incident_id))
    assert pressed.status_code == 303
    assert pressed.cookies.get("session"), "the reconnect link signs the browser in as the integration's owner"
    back = urlsplit(httpx.get(pressed.headers["location"], follow_redirects=False).headers["location"])
    query = {k: v[0] for k, v in parse_qs(back.query).items()}

    with TestClient(create_app(pg)) as another_browser:  # e.g. someone the callback URL was forwarded to
        stolen = another_browser.get(back.path, params=query, headers={"Accept": "application/json"})

    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "session_mismatch"
    assert load(pg, iid).needs_reauth  # the refused browser attached nothing


def test_a_reconnect_form_sent_from_another_site_uses_nothing(pg, google, client):
    iid, _google_email, incident_id = broken(pg, google)
    link = link_for(pg, iid, incident_id)
    form = one_form(client.get(link).text, link)
    forged = client.post(
        form.action, data=form.fields, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert forged.status_code == 403 and "session" not in forged.cookies
    assert press(client, link).status_code == 303  # the link was not used up
