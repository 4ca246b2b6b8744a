from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.fake_google import FakeGoogle, FakeGoogleServer, expected_metric_value, start_fake_google
from tests.support.polling import wait_for

BUSINESS_MANAGE = "https://www.googleapis.com/auth/business.manage"
SCOPES = f"openid email {BUSINESS_MANAGE}"
REDIRECT = "http://127.0.0.1:8000/oauth/google/callback"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGoogleServer]:
    with start_fake_google() as srv:
        yield srv


@pytest.fixture
def fake(server: FakeGoogleServer) -> FakeGoogle:
    server.fake.reset()
    return server.fake


@pytest.fixture
def client(server: FakeGoogleServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        yield c


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def authorize(client: httpx.Client, fake: FakeGoogle, challenge: str | None, **extra: str) -> httpx.Response:
    params = {
        "client_id": fake.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": SCOPES,
        "state": "st-1",
        "access_type": "offline",
        "prompt": "consent",
        **extra,
    }
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return client.get("/o/oauth2/v2/auth", params=params)


def code_from(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["location"]).query).items()}


def exchange(client: httpx.Client, fake: FakeGoogle, code: str, verifier: str | None, **extra: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        **extra,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return client.post("/token", data=form)


def connect(client: httpx.Client, fake: FakeGoogle, email: str = "owner@example.com", **extra: str) -> dict[str, Any]:
    verifier, challenge = pkce()
    code = code_from(authorize(client, fake, challenge, login_hint=email, **extra))["code"]
    resp = exchange(client, fake, code, verifier)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def refresh(client: httpx.Client, fake: FakeGoogle, refresh_token: str) -> httpx.Response:
    return client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwt_payload(token: str) -> dict[str, Any]:
    header, payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "RS256", "kid": "fake", "typ": "JWT"}
    assert signature
    return dict(json.loads(base64.urlsafe_b64decode(payload + "==")))


def test_pkce_code_flow(client: httpx.Client, fake: FakeGoogle) -> None:
    verifier, challenge = pkce()
    resp = authorize(client, fake, challenge, redirect_uri=REDIRECT + "?keep=1")
    location = resp.headers["location"]
    assert location.startswith(REDIRECT + "?keep=1&code=")
    params = code_from(resp)
    assert params["state"] == "st-1"

    resp = exchange(client, fake, params["code"], verifier, redirect_uri=REDIRECT + "?keep=1")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["access_token"].startswith("ya29.")
    assert body["refresh_token"].startswith("1//0")
    assert body["expires_in"] == 3599
    assert body["token_type"] == "Bearer"
    assert body["scope"].split() == SCOPES.split()
    claims = jwt_payload(body["id_token"])
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == fake.client_id
    assert claims["email"] == "owner@example.com" and claims["email_verified"] is True
    assert claims["sub"].isdigit() and claims["exp"] > claims["iat"]
    assert jwt_payload(connect(client, fake)["id_token"])["sub"] == claims["sub"]


def test_wrong_verifier_redirect_mismatch_and_code_reuse(client: httpx.Client, fake: FakeGoogle) -> None:
    verifier, challenge = pkce()
    code = code_from(authorize(client, fake, challenge))["code"]
    resp = exchange(client, fake, code, "wrong-" + verifier)
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_grant", "error_description": "Bad Request"}

    code = code_from(authorize(client, fake, challenge))["code"]
    assert exchange(client, fake, code, verifier, redirect_uri=REDIRECT + "/other").json()["error"] == "invalid_grant"

    code = code_from(authorize(client, fake, challenge))["code"]
    assert exchange(client, fake, code, None).json()["error"] == "invalid_grant"

    code = code_from(authorize(client, fake, challenge))["code"]
    assert exchange(client, fake, code, verifier).status_code == 200
    resp = exchange(client, fake, code, verifier)
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_grant", "error_description": "Malformed auth code."}


def test_no_refresh_token_without_offline_consent_no_id_token_without_openid(
    client: httpx.Client, fake: FakeGoogle
) -> None:
    verifier, challenge = pkce()
    code = code_from(authorize(client, fake, challenge, prompt="select_account", scope=BUSINESS_MANAGE))["code"]
    body = exchange(client, fake, code, verifier).json()
    assert "access_token" in body and "refresh_token" not in body and "id_token" not in body


def test_authorize_errors_and_denied_consent(client: httpx.Client, fake: FakeGoogle) -> None:
    resp = authorize(client, fake, None, client_id="someone-else")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client"
    resp = client.get(
        "/o/oauth2/v2/auth",
        params={
            "client_id": fake.client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "code_challenge": "x",
            "code_challenge_method": "plain",
        },
    )
    assert resp.status_code == 400
    fake.deny_next_consent()
    assert code_from(authorize(client, fake, None)) == {"error": "access_denied", "state": "st-1"}
    assert "code" in code_from(authorize(client, fake, None))


def test_client_authentication(client: httpx.Client, fake: FakeGoogle) -> None:
    rt = connect(client, fake)["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": rt}
    assert client.post("/token", data=form, auth=(fake.client_id, fake.client_secret)).status_code == 200
    resp = client.post("/token", data=form, auth=(fake.client_id, "nope"))
    assert resp.status_code == 401
    assert resp.json() == {"error": "invalid_client", "error_description": "The OAuth client was not found."}
    fake.set_client_status("deleted_client")
    resp = refresh(client, fake, rt)
    assert (resp.status_code, resp.json()["error"]) == (401, "deleted_client")
    fake.set_client_status("unauthorized_client")
    assert refresh(client, fake, rt).json()["error"] == "unauthorized_client"
    fake.set_client_status(None)
    assert refresh(client, fake, rt).status_code == 200


def test_bad_token_requests(client: httpx.Client, fake: FakeGoogle) -> None:
    creds = {"client_id": fake.client_id, "client_secret": fake.client_secret}
    resp = client.post("/token", data=creds)
    assert (resp.status_code, resp.json()["error"]) == (400, "unsupported_grant_type")
    assert client.post("/token", data={**creds, "grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    resp = client.post("/token", data={**creds, "grant_type": "refresh_token"})
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
    resp = client.post("/token", data={**creds, "grant_type": "authorization_code", "code": "x"})
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")


def test_refresh_grant(client: httpx.Client, fake: FakeGoogle) -> None:
    first = connect(client, fake)
    fake.token_lifetime = 120
    resp = refresh(client, fake, first["refresh_token"])
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["expires_in"] == 120 and body["access_token"] != first["access_token"]
    # Older access tokens stay valid, like at Google.
    assert client.get("/accountmanagement/v1/accounts", headers=bearer(first["access_token"])).status_code == 200


def test_revoke(client: httpx.Client, fake: FakeGoogle) -> None:
    tokens = connect(client, fake)
    assert client.post("/revoke", data={"token": tokens["access_token"]}).json() == {}
    resp = refresh(client, fake, tokens["refresh_token"])
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    resp = client.post("/revoke", data={"token": tokens["refresh_token"]})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_token"

    a, b = connect(client, fake, "a@example.com"), connect(client, fake, "b@example.com")
    assert fake.revoke_user("a@example.com") == 1
    assert refresh(client, fake, a["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(client, fake, b["refresh_token"]).status_code == 200
    assert fake.revoke_refresh_token(b["refresh_token"]) is True
    assert refresh(client, fake, b["refresh_token"]).status_code == 400


def test_older_refresh_tokens_stay_valid(client: httpx.Client, fake: FakeGoogle) -> None:
    old, new = connect(client, fake), connect(client, fake)
    assert refresh(client, fake, old["refresh_token"]).status_code == 200
    assert refresh(client, fake, new["refresh_token"]).status_code == 200


def test_grant_errors(client: httpx.Client, fake: FakeGoogle) -> None:
    rt = connect(client, fake, "rapt@example.com")["refresh_token"]
    fake.set_grant_error("rapt@example.com", "invalid_rapt")
    resp = refresh(client, fake, rt)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant" and resp.json()["error_subtype"] == "invalid_rapt"
    fake.set_grant_error("rapt@example.com", None)
    fake.set_grant_error(rt, "invalid_grant")
    assert refresh(client, fake, rt).json()["error_description"] == "Token has been expired or revoked."
    fake.set_grant_error(rt, None)
    assert refresh(client, fake, rt).status_code == 200
    with pytest.raises(ValueError):
        fake.set_grant_error(rt, "bogus")


def test_rotating_refresh_tokens(client: httpx.Client, fake: FakeGoogle) -> None:
    rt = connect(client, fake)["refresh_token"]
    fake.rotate_refresh_tokens = True
    body = refresh(client, fake, rt).json()
    assert body["refresh_token"] != rt
    assert refresh(client, fake, rt).json()["error"] == "invalid_grant"
    assert refresh(client, fake, body["refresh_token"]).status_code == 200


def test_fail_next_token_and_api(client: httpx.Client, fake: FakeGoogle) -> None:
    tokens = connect(client, fake)
    fake.fail_next("token", 503)
    fake.fail_next("token", 429, retry_after=7)
    resp = refresh(client, fake, tokens["refresh_token"])
    assert (resp.status_code, resp.json()["error"]) == (503, "internal_failure")
    assert "retry-after" not in resp.headers
    resp = refresh(client, fake, tokens["refresh_token"])
    assert (resp.status_code, resp.json()["error"], resp.headers["retry-after"]) == (429, "rate_limit_exceeded", "7")
    assert refresh(client, fake, tokens["refresh_token"]).status_code == 200

    headers = bearer(tokens["access_token"])
    fake.fail_next("*", 503, count=2, retry_after=3)
    for path in ("/accountmanagement/v1/accounts", "/accountmanagement/v1/accounts"):
        resp = client.get(path, headers=headers)
        assert resp.status_code == 503 and resp.headers["retry-after"] == "3"
        assert resp.json()["error"]["status"] == "UNAVAILABLE"
    fake.fail_next("accounts", 429)
    assert client.get("/accountmanagement/v1/accounts", headers=headers).json()["error"]["status"] == (
        "RESOURCE_EXHAUSTED"
    )
    fake.fail_next("accounts", 200, body="<html>garbage")
    resp = client.get("/accountmanagement/v1/accounts", headers=headers)
    assert (resp.status_code, resp.text) == (200, "<html>garbage")
    assert client.get("/accountmanagement/v1/accounts", headers=headers).status_code == 200


def test_fail_ratio(client: httpx.Client, fake: FakeGoogle) -> None:
    rt = connect(client, fake)["refresh_token"]
    fake.fail_ratio("token", 500, 0.5, seed=1)
    statuses = [refresh(client, fake, rt).status_code for _ in range(40)]
    assert 5 < statuses.count(500) < 35 and statuses.count(200) == 40 - statuses.count(500)
    fake.clear_failures()
    assert all(refresh(client, fake, rt).status_code == 200 for _ in range(5))


def test_latency_and_hang(server: FakeGoogleServer, client: httpx.Client, fake: FakeGoogle) -> None:
    rt = connect(client, fake)["refresh_token"]
    fake.set_latency("token", 200)
    started = time.perf_counter()
    assert refresh(client, fake, rt).status_code == 200
    assert time.perf_counter() - started >= 0.19
    fake.set_latency("token", 0)
    fake.hang_next("token", 1.5)
    with httpx.Client(base_url=server.url, timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        refresh(impatient, fake, rt)

    # The hang was one-shot: the call that met it used it up (once the server has taken that request), and
    # nothing is left to hold the next call.
    def hang_pending() -> bool:
        with fake._lock:
            return bool(fake.faults._hangs.get("token"))

    wait_for(lambda: not hang_pending(), what="the hung call to take its hang")
    with fake._lock:
        assert fake.faults.take("token") == (0.0, None)
    assert refresh(client, fake, rt).status_code == 200


def test_accounts_paging(client: httpx.Client, fake: FakeGoogle) -> None:
    fake.set_user_shape("many@example.com", accounts=3)
    headers = bearer(connect(client, fake, "many@example.com")["access_token"])
    names: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, str | int] = {"pageSize": 1} | ({"pageToken": token} if token else {})
        body = client.get("/accountmanagement/v1/accounts", params=params, headers=headers).json()
        assert len(body["accounts"]) == 1 and body["accounts"][0]["type"] == "PERSONAL"
        names.append(body["accounts"][0]["name"])
        token = body.get("nextPageToken")
        if token is None:
            break
    assert len(set(names)) == 3 and all(n.startswith("accounts/") for n in names)
    all_at_once = client.get("/accountmanagement/v1/accounts", headers=headers).json()
    assert [a["name"] for a in all_at_once["accounts"]] == names and "nextPageToken" not in all_at_once
    resp = client.get("/accountmanagement/v1/accounts", params={"pageSize": 21}, headers=headers)
    assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_locations_paging_and_ownership(client: httpx.Client, fake: FakeGoogle) -> None:
    fake.locations_per_account = 3
    headers = bearer(connect(client, fake)["access_token"])
    other = bearer(connect(client, fake, "other@example.com")["access_token"])
    account = client.get("/accountmanagement/v1/accounts", headers=headers).json()["accounts"][0]["name"]
    url = f"/businessinformation/v1/{account}/locations"
    first = client.get(url, params={"readMask": "name,title", "pageSize": 2}, headers=headers).json()
    assert len(first["locations"]) == 2 and first["locations"][0]["title"].endswith("#1")
    rest = client.get(
        url, params={"readMask": "name,title", "pageSize": 2, "pageToken": first["nextPageToken"]}, headers=headers
    ).json()
    assert len(rest["locations"]) == 1 and "nextPageToken" not in rest
    assert all(loc["name"].startswith("locations/") for loc in first["locations"] + rest["locations"])
    assert client.get(url, headers=headers).json()["error"]["status"] == "INVALID_ARGUMENT"
    assert client.get(url, params={"readMask": "name", "pageSize": 101}, headers=headers).status_code == 400
    resp = client.get(url, params={"readMask": "name,title"}, headers=other)
    assert resp.status_code == 403 and resp.json()["error"]["status"] == "PERMISSION_DENIED"
    # Ids are deterministic: a fresh fake (another process) gives the same ones.
    assert FakeGoogle().layout_for("owner@example.com").accounts[0].name == account


def test_performance(client: httpx.Client, fake: FakeGoogle) -> None:
    headers = bearer(connect(client, fake)["access_token"])
    location = fake.layout_for("owner@example.com").accounts[0].locations[0].name
    start, end = datetime.date(2025, 11, 1), datetime.date(2026, 2, 28)
    params: list[tuple[str, str]] = [
        ("dailyMetrics", "WEBSITE_CLICKS"),
        ("dailyMetrics", "CALL_CLICKS"),
        ("dailyRange.startDate.year", str(start.year)),
        ("dailyRange.startDate.month", str(start.month)),
        ("dailyRange.startDate.day", str(start.day)),
        ("dailyRange.endDate.year", str(end.year)),
        ("dailyRange.endDate.month", str(end.month)),
        ("dailyRange.endDate.day", str(end.day)),
    ]
    url = f"/performance/v1/{location}:fetchMultiDailyMetricsTimeSeries"
    resp = client.get(url, params=tuple(params), headers=headers)
    assert resp.status_code == 200, resp.text
    series = resp.json()["multiDailyMetricTimeSeries"][0]["dailyMetricTimeSeries"]
    assert [s["dailyMetric"] for s in series] == ["WEBSITE_CLICKS", "CALL_CLICKS"]
    zeros = 0
    for s in series:
        dated = s["timeSeries"]["datedValues"]
        assert len(dated) == (end - start).days + 1
        for entry in dated:
            day = datetime.date(entry["date"]["year"], entry["date"]["month"], entry["date"]["day"])
            expected = expected_metric_value(location, s["dailyMetric"], day)
            if expected == 0:
                zeros += 1
                assert "value" not in entry
            else:
                assert entry["value"] == str(expected)
    assert zeros > 0

    bad = [("dailyMetrics", "NOPE"), *params[2:]]
    assert client.get(url, params=tuple(bad), headers=headers).json()["error"]["status"] == "INVALID_ARGUMENT"
    assert client.get(url, params=tuple(params[:4]), headers=headers).status_code == 400
    wrong_method = url.replace("fetchMultiDailyMetricsTimeSeries", "getDailyMetricsTimeSeries")
    assert client.get(wrong_method, params=tuple(params), headers=headers).status_code == 404
    other = bearer(connect(client, fake, "other@example.com")["access_token"])
    assert client.get(url, params=tuple(params), headers=other).json()["error"]["status"] == "PERMISSION_DENIED"
    fake.forbid_location(location)
    resp = client.get(url, params=tuple(params), headers=headers)
    assert resp.status_code == 403 and resp.json()["error"]["status"] == "PERMISSION_DENIED"


def test_api_authentication_and_scopes(client: httpx.Client, fake: FakeGoogle) -> None:
    url = "/accountmanagement/v1/accounts"
    resp = client.get(url, headers=bearer("ya29.unknown"))
    assert resp.status_code == 401 and resp.json()["error"]["status"] == "UNAUTHENTICATED"
    assert client.get(url).status_code == 401

    tokens = connect(client, fake)
    fake.expire_access_tokens("someone-else@example.com")
    assert client.get(url, headers=bearer(tokens["access_token"])).status_code == 200
    fake.expire_access_tokens("owner@example.com")
    assert client.get(url, headers=bearer(tokens["access_token"])).status_code == 401
    fresh = refresh(client, fake, tokens["refresh_token"]).json()["access_token"]
    assert client.get(url, headers=bearer(fresh)).status_code == 200

    fake.clock = lambda: time.time() + 3600
    try:
        assert client.get(url, headers=bearer(fresh)).status_code == 401
    finally:
        fake.clock = time.time

    fake.grant_scopes(["openid", "email"])
    reduced = connect(client, fake, "reduced@example.com")
    assert BUSINESS_MANAGE not in reduced["scope"].split()
    resp = client.get(url, headers=bearer(reduced["access_token"]))
    assert resp.status_code == 403
    assert resp.json()["error"] == {
        "code": 403,
        "message": "Request had insufficient authentication scopes.",
        "status": "PERMISSION_DENIED",
    }


def test_counters_and_reset(client: httpx.Client, fake: FakeGoogle) -> None:
    a = connect(client, fake, "a@example.com")
    b = connect(client, fake, "b@example.com")
    fake.rotate_refresh_tokens = True
    rotated = refresh(client, fake, a["refresh_token"]).json()["refresh_token"]
    refresh(client, fake, rotated)
    refresh(client, fake, b["refresh_token"])
    refresh(client, fake, "1//0unknown")
    fake.fail_next("token", 503)
    refresh(client, fake, b["refresh_token"])

    assert fake.refresh_calls_for("a@example.com") == 2
    assert fake.refresh_calls_for("b@example.com") == 2
    assert fake.total_refresh_calls == 5
    assert fake.refresh_calls_by_token[b["refresh_token"]] == 2
    assert fake.calls["auth"] == 2 and fake.calls["token"] == 7
    issued = fake.issued_tokens()
    assert {a["access_token"], a["refresh_token"], rotated, b["refresh_token"]} <= issued

    fake.reset()
    assert fake.calls == {} and fake.total_refresh_calls == 0 and fake.issued_tokens() == set()
    assert fake.rotate_refresh_tokens is False
    assert refresh(client, fake, b["refresh_token"]).status_code == 400


def test_concurrent_refreshes_are_all_counted(server: FakeGoogleServer, fake: FakeGoogle) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        rt = connect(c, fake)["refresh_token"]

        def one(_: int) -> int:
            return refresh(c, fake, rt).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, range(80))) == {200}
    assert fake.refresh_calls_by_token[rt] == 80


def test_http_control_endpoints(client: httpx.Client, fake: FakeGoogle) -> None:
    assert (
        client.post("/_control/config", json={"token_lifetime": 60, "rotate_refresh_tokens": False}).status_code == 200
    )
    tokens = connect(client, fake, "ctl@example.com")
    assert tokens["expires_in"] == 60

    assert client.post("/_control/fail", json={"endpoint": "token", "status": 429, "retry_after": 2}).status_code == 200
    resp = refresh(client, fake, tokens["refresh_token"])
    assert (resp.status_code, resp.headers["retry-after"]) == (429, "2")

    client.post("/_control/latency", json={"endpoint": "token", "ms": 150})
    started = time.perf_counter()
    assert refresh(client, fake, tokens["refresh_token"]).status_code == 200
    assert time.perf_counter() - started >= 0.14
    client.post("/_control/latency", json={"endpoint": "token", "ms": 0})

    client.post("/_control/config", json={"client_status": "deleted_client"})
    assert refresh(client, fake, tokens["refresh_token"]).json()["error"] == "deleted_client"
    client.post("/_control/config", json={"client_status": None})

    assert client.post("/_control/revoke", json={"email": "ctl@example.com"}).json() == {"revoked": 1}
    assert refresh(client, fake, tokens["refresh_token"]).json()["error"] == "invalid_grant"

    stats = client.get("/_control/stats").json()
    assert stats["calls"]["token"] == 5 and stats["total_refresh_calls"] == 4
    assert stats["refresh_calls_by_user"] == {"ctl@example.com": 4}
    assert tokens["refresh_token"] in stats["issued_tokens"]

    assert client.post("/_control/fail", json={"status": 500}).status_code == 400
    assert client.post("/_control/fail", json={"endpoint": "nope", "status": 500}).status_code == 400
    assert client.post("/_control/config", json={"bogus": 1}).status_code == 400
    assert client.post("/_control/reset").status_code == 200
    assert client.get("/_control/stats").json()["calls"] == {}


def test_env(server: FakeGoogleServer) -> None:
    env = server.env()
    assert env["GOOGLE_TOKEN_URL"] == f"{server.url}/token"
    assert env["GBP_PERFORMANCE_URL"] == f"{server.url}/performance/v1"
    assert env["GOOGLE_CLIENT_ID"] == "fake-client-id.apps.googleusercontent.com"
    assert env["GOOGLE_CLIENT_SECRET"] == "fake-client-secret"
    assert set(env) == {
        "GOOGLE_AUTH_URL",
        "GOOGLE_TOKEN_URL",
        "GOOGLE_REVOKE_URL",
        "GBP_ACCOUNT_MANAGEMENT_URL",
        "GBP_BUSINESS_INFORMATION_URL",
        "GBP_PERFORMANCE_URL",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "GBP_QPM",
    }


def test_module_entry_point() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.fake_google", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 10
        while True:
            try:
                assert httpx.get(f"{url}/_control/stats", timeout=2).json()["calls"] == {}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_call_hung_across_a_reset_does_not_count_afterwards(server: FakeGoogleServer, fake: FakeGoogle) -> None:
    rt = connect(httpx.Client(base_url=server.url, timeout=5), fake, "hung@example.com")["refresh_token"]
    fake.hang_next("token", 0.5)
    with httpx.Client(base_url=server.url, timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        refresh(impatient, fake, rt)
    fake.reset()
    time.sleep(0.7)  # let the hung call finish on the server: there is no condition to poll for a non-event
    assert fake.total_refresh_calls == 0
