"""Who may see what: API keys, other users' integrations, ids that cannot exist, body limits, admin key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from common.config import Secret
from common.models import Integration, User
from services.api.serialize import INTEGRATION_FIELDS
from tests.conftest import TEST_ADMIN_KEY, make_settings
from tests.support.api import Api, bearer, build_app, close, drain
from tests.support.flows import load

pytest_plugins = ["tests.support.api"]

ON_AN_INTEGRATION = [
    ("GET", ""),
    ("POST", "/sync"),
    ("POST", "/refresh"),
    ("GET", "/insights"),
    ("DELETE", ""),  # last: it changes the row
]
AUTHENTICATED = [("GET", "/integrations"), ("POST", "/integrations/google/connect")] + [
    (m, f"/integrations/1{p}") for m, p in ON_AN_INTEGRATION
]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer ik_not-a-real-key",
        "Basic dXNlcjpwYXNz",
        "ik_no-scheme",
        "Bearer " + "x" * 600,
    ],
)
def test_a_missing_or_wrong_key_is_401_with_a_bearer_challenge(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in AUTHENTICATED:
        resp = api.client.request(method, path, headers=headers)
        assert resp.status_code == 401, (method, path)
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json()["error"]["code"] == "unauthorized"


def test_another_users_integration_is_404_on_every_endpoint_and_stays_untouched(api: Api) -> None:
    _, owner = api.user()
    _, intruder = api.user()
    iid = api.connect(owner)
    drain(api.amqp_url, "sync")
    before = load(api.c, iid)

    for method, path in ON_AN_INTEGRATION:
        resp = api.client.request(method, f"/integrations/{iid}{path}", headers=intruder)
        assert resp.status_code == 404, (method, path)
        missing = api.client.request(method, f"/integrations/{iid + 10_000}{path}", headers=intruder)
        assert resp.json() == missing.json(), "indistinguishable from an id that does not exist"

    after = load(api.c, iid)
    assert (after.status, after.refresh_token_enc) == ("active", before.refresh_token_enc)
    assert api.google.fake.calls.get("revoke", 0) == 0
    assert drain(api.amqp_url, "sync") == [] and drain(api.amqp_url, "refresh") == []
    assert api.client.get("/integrations", headers=intruder).json() == []


@pytest.mark.parametrize(
    "bad_id", ["abc", "-1", "0", "99999999999999999999", "9223372036854775808", "1.5", "01", "1e3"]
)
def test_ids_that_cannot_exist_are_4xx_on_every_endpoint(api: Api, bad_id: str) -> None:
    _, headers = api.user()
    for method, path in ON_AN_INTEGRATION:
        resp = api.client.request(method, f"/integrations/{bad_id}{path}", headers=headers)
        assert 400 <= resp.status_code < 500, (method, path, resp.status_code)
        assert set(resp.json()["error"]) == {"code", "message"}


def test_a_body_over_64_kib_is_413(api: Api) -> None:
    _, headers = api.user()
    big = b'{"login_hint": "' + b"a" * 70_000 + b'"}'
    announced = api.client.post("/integrations/google/connect", headers=headers, content=big)
    assert announced.status_code == 413
    assert announced.json()["error"]["code"] == "payload_too_large"

    streamed = api.client.post(
        "/integrations/google/connect", headers=headers, content=iter([big[:40_000], big[40_000:]])
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "payload_too_large"


def test_unknown_paths_and_methods_answer_json_errors(api: Api) -> None:
    _, headers = api.user()
    missing = api.client.get("/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = api.client.put("/integrations/1", headers=headers)
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "DELETE" in wrong.headers["allow"]


def test_no_response_carries_a_token(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    texts = [
        api.client.get("/integrations", headers=headers).text,
        api.client.get(f"/integrations/{iid}", headers=headers).text,
        api.client.post(f"/integrations/{iid}/sync", headers=headers).text,
        api.client.get("/admin/token-health", headers=bearer(TEST_ADMIN_KEY)).text,
    ]
    for token in api.google.fake.issued_tokens():
        assert not any(token in text for text in texts)


def test_admin_token_health_lists_failing_integrations_with_their_owner(api: Api) -> None:
    _, headers = api.user()
    broken = api.connect(headers)
    healthy = api.connect(headers)
    with api.c.sessions.begin() as s:
        s.execute(
            update(Integration)
            .where(Integration.id == broken)
            .values(last_sync_status="error", needs_reauth=True, error_kind="reauth_required", last_sync_message="x")
        )
        owner = s.get(Integration, broken).user_id

    for key in (
        None,
        headers["Authorization"],
        "Bearer wrong",
        f"Bearer {TEST_ADMIN_KEY}-and-more",
        f"Bearer {TEST_ADMIN_KEY[:-1]}",
    ):
        resp = api.client.get("/admin/token-health", headers={"Authorization": key} if key else {})
        assert resp.status_code == 401, key
    report = api.client.get("/admin/token-health", headers=bearer(TEST_ADMIN_KEY)).json()
    mine = {r["id"]: r for r in report if r["id"] in (broken, healthy)}
    assert list(mine) == [broken]
    assert list(mine[broken]) == [*INTEGRATION_FIELDS, "user_email"]
    assert mine[broken]["needs_reauth"] is True and mine[broken]["error_kind"] == "reauth_required"
    with api.c.sessions() as s:
        assert mine[broken]["user_email"] == s.get(User, owner).email


@pytest.fixture
def no_admin_key(pg_url: str, google, api_vhost: str) -> Iterator[TestClient]:
    settings = replace(make_settings(pg_url, google, broker_url=api_vhost), admin_api_key=Secret(""))
    app, c = build_app(settings, api_vhost)
    with TestClient(app) as client:
        yield client
    close(c)


def test_admin_api_is_503_when_no_admin_key_is_configured(no_admin_key: TestClient) -> None:
    for headers in ({}, bearer(""), bearer("anything")):
        resp = no_admin_key.get("/admin/token-health", headers=headers)
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "admin_disabled"


def test_keys_are_checked_against_the_database_not_cached(api: Api) -> None:
    user_id, headers = api.user()
    assert api.client.get("/integrations", headers=headers).status_code == 200
    with api.c.sessions.begin() as s:
        s.execute(update(User).where(User.id == user_id).values(api_key_hash="0" * 64))
    assert api.client.get("/integrations", headers=headers).status_code == 401


def test_sync_and_refresh_check_the_key_before_the_id(api: Api) -> None:
    """POST sync/refresh check the key and the integration in one query: a bad key is still a 401 first."""
    _, headers = api.user()
    for action in ("sync", "refresh"):
        for raw_id in ("abc", "0", "-1", "9" * 30, "424242"):
            path = f"/integrations/{raw_id}/{action}"
            assert api.client.post(path, headers=bearer("ik_wrong")).status_code == 401, path
            assert api.client.post(path).status_code == 401, path
            assert api.client.post(path, headers=headers).status_code == 404, path


def test_sync_checks_the_key_against_the_database_on_every_request(api: Api) -> None:
    user_id, headers = api.user()
    iid = api.connect(headers)
    assert api.client.post(f"/integrations/{iid}/sync", headers=headers).status_code == 202
    with api.c.sessions.begin() as s:
        s.execute(update(User).where(User.id == user_id).values(api_key_hash="1" * 64))
    resp = api.client.post(f"/integrations/{iid}/sync", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
