"""Connecting a Google account through the API: connect → consent at the fake → callback → done page."""

from __future__ import annotations

import datetime as dt
import hashlib
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select, update

from common.google_oauth import BUSINESS_SCOPE
from common.models import Integration, OAuthState
from common.tasks import INTEGRATION_CONNECTED
from tests.support.api import Api, consent, messages_for, start
from tests.support.flows import load, new_email

pytest_plugins = ["tests.support.api"]

JSON = {"Accept": "application/json"}


def _callback(api: Api, query: dict[str, str], headers: dict[str, str] | None = None):
    return api.client.get("/oauth/google/callback", params=query, headers=headers, follow_redirects=False)


def _integrations(api: Api, headers: dict[str, str]) -> list[dict]:
    resp = api.client.get("/integrations", headers=headers)
    assert resp.status_code == 200
    return resp.json()


def test_connect_answers_googles_consent_url_with_offline_access_pkce_and_a_stored_state(api: Api) -> None:
    user_id, headers = api.user()
    url = start(api.client, headers)

    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(api.c.settings.google_auth_url + "?")
    assert query["access_type"] == "offline"
    assert query["prompt"] == "consent"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == api.c.settings.public_base_url + "/oauth/google/callback"
    assert BUSINESS_SCOPE in query["scope"].split()
    state = query["state"]
    with api.c.sessions() as s:
        row = s.get(OAuthState, hashlib.sha256(state.encode()).hexdigest())
        assert row is not None, "the state is stored as its SHA-256"
        assert s.get(OAuthState, state) is None
        assert row.user_id == user_id and row.used_at is None
        assert row.expires_at - row.created_at == dt.timedelta(minutes=10)


def test_callback_stores_tokens_encrypted_and_queues_the_initial_sync(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)

    row = load(api.c, iid)
    issued = api.google.fake.issued_tokens()
    assert row.access_token_enc and row.refresh_token_enc
    for token in issued:
        assert token not in row.access_token_enc and token not in row.refresh_token_enc
    assert api.c.cipher.decrypt(row.refresh_token_enc, integration_id=iid, field="refresh_token") in issued
    assert [i["id"] for i in _integrations(api, headers)] == [iid]
    queued = messages_for(api.amqp_url, "sync", INTEGRATION_CONNECTED, iid)
    assert [m["args"] for m in queued] == [[iid]]


def test_callback_redirects_to_a_page_naming_the_integration(api: Api) -> None:
    _, headers = api.user()
    google_email = new_email("shop")
    resp = _callback(api, consent(start(api.client, headers, google_email)))

    assert resp.status_code == 303
    done = urlsplit(resp.headers["location"])
    assert done.path == "/oauth/google/done"
    page = api.client.get(f"{done.path}?{done.query}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert google_email in page.text and "connected" in page.text
    info = api.client.get(f"{done.path}?{done.query}", headers=JSON).json()
    assert info["result"] == "connected" and info["first_sync"] == "queued"
    assert google_email in info["display_name"]


def test_connecting_the_same_google_account_again_updates_the_one_integration(api: Api) -> None:
    _, headers = api.user()
    google_email = new_email("g")
    first = api.connect(headers, google_email)
    second = api.connect(headers, google_email)

    assert first == second
    assert [i["id"] for i in _integrations(api, headers)] == [first]
    assert len(messages_for(api.amqp_url, "sync", INTEGRATION_CONNECTED, first)) == 2


def test_a_state_works_once(api: Api) -> None:
    _, headers = api.user()
    query = consent(start(api.client, headers))
    assert _callback(api, query).status_code == 303

    again = _callback(api, query, JSON)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "invalid_state"
    assert "already used" in again.json()["error"]["message"]


def test_a_forged_state_is_rejected_and_connects_nothing(api: Api) -> None:
    _, headers = api.user()
    query = consent(start(api.client, headers))
    resp = _callback(api, {"code": query["code"], "state": "forged-" + query["state"][7:]})

    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("text/html")
    assert "Start the connection again" in resp.text
    assert _integrations(api, headers) == []


def test_an_expired_state_is_rejected(api: Api) -> None:
    _, headers = api.user()
    query = consent(start(api.client, headers))
    with api.c.sessions.begin() as s:
        s.execute(
            update(OAuthState)
            .where(OAuthState.state_hash == hashlib.sha256(query["state"].encode()).hexdigest())
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    resp = _callback(api, query, JSON)

    assert resp.status_code == 400
    assert "expired" in resp.json()["error"]["message"]
    assert _integrations(api, headers) == []


def test_access_denied_at_google_is_a_clear_400_and_uses_up_the_state(api: Api) -> None:
    _, headers = api.user()
    api.google.fake.deny_next_consent()
    query = consent(start(api.client, headers))
    assert query["error"] == "access_denied"

    resp = _callback(api, query)
    assert resp.status_code == 400
    assert "denied" in resp.text
    replay = _callback(api, {"state": query["state"], "code": "anything"}, JSON)
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "invalid_state"
    assert _integrations(api, headers) == []


def test_a_callback_without_code_is_400(api: Api) -> None:
    _, headers = api.user()
    query = consent(start(api.client, headers))
    resp = _callback(api, {"state": query["state"]}, JSON)

    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "missing_code"


def test_a_grant_without_the_business_permission_is_400_explaining_it(api: Api) -> None:
    _, headers = api.user()
    api.google.fake.grant_scopes(["openid", "email"])
    resp = _callback(api, consent(start(api.client, headers)), JSON)

    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "missing_permission"
    assert "permission" in error["message"] and "Business Profile" in error["message"]
    assert _integrations(api, headers) == []


def test_the_state_binds_the_callback_to_the_user_who_started_it(api: Api) -> None:
    starter_id, starter = api.user()
    _, other = api.user()
    # The browser arriving at the callback carries no API key at all; the state alone names the user.
    assert _callback(api, consent(start(api.client, starter))).status_code == 303

    assert len(_integrations(api, starter)) == 1
    assert _integrations(api, other) == []
    with api.c.sessions() as s:
        owners = s.execute(select(Integration.user_id).where(Integration.user_id == starter_id)).scalars().all()
    assert owners == [starter_id]


def test_the_done_page_rejects_a_tampered_link(api: Api) -> None:
    resp = api.client.get("/oauth/google/done", params={"r": "eyJpIjoxfQ.forged"})
    assert resp.status_code == 400
    assert "invalid" in resp.text


def test_connect_rejects_a_body_that_is_not_a_connect_request(api: Api) -> None:
    _, headers = api.user()
    for body in (b"[1]", b"{not json", b'{"login_hint": "not-an-email"}', b'{"other": 1}'):
        resp = api.client.post("/integrations/google/connect", headers=headers, content=body)
        assert resp.status_code == 400, body
        assert set(resp.json()["error"]) == {"code", "message"}
