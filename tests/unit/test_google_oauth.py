"""The Google OAuth client against the fake over real HTTP: every answer maps to one error class and reason."""

from __future__ import annotations

import datetime as dt
import functools
import socket
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from common.errors import ProviderConfigError, ProviderError, QuotaExceeded, ReauthRequired, TransientProviderError
from common.google_oauth import (
    BUSINESS_SCOPE,
    MSG_INVALID_GRANT,
    MSG_INVALID_RAPT,
    MSG_MISSING_SCOPE,
    GoogleOAuthClient,
    GoogleOAuthConfig,
    Pkce,
    TokenGrant,
)
from services.fake_google import FakeGoogleServer

REDIRECT = "http://127.0.0.1:8000/oauth/google/callback"
EMAIL = "owner-oauth@example.com"


def make_client(
    google: FakeGoogleServer, *, secret: str | None = None, timeout: float = 5.0, url: str = ""
) -> GoogleOAuthClient:
    base = url or google.url
    return GoogleOAuthClient(
        GoogleOAuthConfig(
            client_id=google.fake.client_id,
            client_secret=google.fake.client_secret if secret is None else secret,
            auth_url=f"{google.url}/o/oauth2/v2/auth",
            token_url=f"{base}/token",
            revoke_url=f"{base}/revoke",
            timeout_seconds=timeout,
        )
    )


@functools.cache
def browser() -> httpx.Client:
    """The user's browser (one client: building one costs a TLS context load)."""
    return httpx.Client(timeout=5)


@pytest.fixture
def oauth(google: FakeGoogleServer) -> Iterator[GoogleOAuthClient]:
    client = make_client(google)
    yield client
    client.close()


def consent(client: GoogleOAuthClient, email: str = EMAIL) -> tuple[str, Pkce]:
    pkce = Pkce.new()
    url = client.authorization_url(redirect_uri=REDIRECT, state="st", pkce=pkce, login_hint=email)
    resp = browser().get(url, follow_redirects=False)
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["state"] == ["st"]
    return query["code"][0], pkce


def connect(client: GoogleOAuthClient, email: str = EMAIL) -> TokenGrant:
    code, pkce = consent(client, email)
    return client.exchange_code(code=code, code_verifier=pkce.verifier, redirect_uri=REDIRECT)


def refresh_error(client: GoogleOAuthClient, refresh_token: str) -> ProviderError:
    with pytest.raises(ProviderError) as err:
        client.refresh(refresh_token)
    return err.value


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    for value in secrets:
        assert value not in str(error) and value not in repr(error)


def test_authorization_url_asks_for_offline_consent_with_pkce(oauth: GoogleOAuthClient) -> None:
    pkce = Pkce.new()
    query = parse_qs(urlsplit(oauth.authorization_url(redirect_uri=REDIRECT, state="s1", pkce=pkce)).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["code_challenge"] == [pkce.challenge] and query["code_challenge_method"] == ["S256"]
    assert BUSINESS_SCOPE in query["scope"][0].split()
    assert pkce.verifier not in repr(pkce)


def test_code_exchange_gives_tokens_scopes_and_identity(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    grant = connect(oauth)
    assert grant.access_token.startswith("ya29.") and grant.refresh_token
    assert BUSINESS_SCOPE in grant.scopes
    assert grant.id_token_claims["email"] == EMAIL
    assert grant.access_token in google.fake.issued_tokens()
    assert grant.access_token not in repr(grant) and grant.refresh_token not in repr(grant)


def test_code_exchange_with_the_wrong_pkce_verifier_is_refused(oauth: GoogleOAuthClient) -> None:
    code, _ = consent(oauth)
    with pytest.raises(ReauthRequired) as err:
        oauth.exchange_code(code=code, code_verifier=Pkce.new().verifier, redirect_uri=REDIRECT)
    assert err.value.reason == "invalid_grant"


def test_reduced_scopes_at_code_exchange_are_missing_scope(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    google.fake.grant_scopes(["openid", "email"])
    code, pkce = consent(oauth)
    with pytest.raises(ReauthRequired) as err:
        oauth.exchange_code(code=code, code_verifier=pkce.verifier, redirect_uri=REDIRECT)
    assert (err.value.reason, err.value.message, err.value.kind) == (
        "missing_scope",
        MSG_MISSING_SCOPE,
        "reauth_required",
    )


def test_refresh_keeps_the_old_refresh_token_when_google_sends_none(oauth: GoogleOAuthClient) -> None:
    first = connect(oauth)
    assert first.refresh_token is not None
    again = oauth.refresh(first.refresh_token)
    assert again.refresh_token == first.refresh_token
    assert again.access_token != first.access_token


def test_refresh_takes_a_rotated_refresh_token(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    first = connect(oauth)
    assert first.refresh_token is not None
    google.fake.rotate_refresh_tokens = True
    again = oauth.refresh(first.refresh_token)
    assert again.refresh_token and again.refresh_token != first.refresh_token
    assert oauth.refresh(again.refresh_token).access_token


def test_expires_at_counts_from_when_the_request_was_sent(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    google.fake.set_latency("token", 1000)
    sent = dt.datetime.now(dt.UTC)
    fresh = oauth.refresh(grant.refresh_token)
    received = dt.datetime.now(dt.UTC)
    lifetime = dt.timedelta(seconds=google.fake.token_lifetime)
    assert received - sent >= dt.timedelta(seconds=1)
    # Counting from the answer would overstate the lifetime by the request's duration. Both bounds follow from
    # the order of events alone (sent <= request sent; answered at least the fake's 1 s later <= received),
    # never from how fast this machine is.
    second = dt.timedelta(seconds=1)
    assert sent + lifetime - second / 2 <= fresh.expires_at <= received + lifetime - second


def test_revoke_ends_the_grant(oauth: GoogleOAuthClient) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    assert oauth.revoke(grant.refresh_token) is True
    assert oauth.revoke(grant.refresh_token) is False
    assert refresh_error(oauth, grant.refresh_token).reason == "invalid_grant"


def test_revoke_is_best_effort_when_google_is_unreachable(google: FakeGoogleServer) -> None:
    client = make_client(google, url=f"http://127.0.0.1:{closed_port()}")
    assert client.revoke("1//0whatever") is False


# --- the reason-code table -----------------------------------------------------------------------------


def test_revoked_grant_is_invalid_grant(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    google.fake.revoke_user(EMAIL)
    err = refresh_error(oauth, grant.refresh_token)
    assert (type(err), err.reason, err.message, err.status) == (ReauthRequired, "invalid_grant", MSG_INVALID_GRANT, 400)
    assert_no_secret(err, grant.refresh_token, grant.access_token)


def test_session_policy_is_invalid_rapt(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    google.fake.set_grant_error(EMAIL, "invalid_rapt")
    err = refresh_error(oauth, grant.refresh_token)
    assert (type(err), err.reason, err.message) == (ReauthRequired, "invalid_rapt", MSG_INVALID_RAPT)


def test_refresh_of_a_grant_without_the_business_scope_is_missing_scope(
    oauth: GoogleOAuthClient, google: FakeGoogleServer
) -> None:
    google.fake.grant_scopes(["openid", "email"])
    code, pkce = consent(oauth)
    # Exchanged by hand: our client refuses such a grant, but one may predate the check.
    resp = browser().post(
        f"{google.url}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": pkce.verifier,
            "redirect_uri": REDIRECT,
            "client_id": google.fake.client_id,
            "client_secret": google.fake.client_secret,
        },
    )
    refresh_token = resp.json()["refresh_token"]
    err = refresh_error(oauth, refresh_token)
    assert (type(err), err.reason, err.message) == (ReauthRequired, "missing_scope", MSG_MISSING_SCOPE)


def test_wrong_client_secret_is_invalid_client(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    wrong = make_client(google, secret="not-the-secret")
    err = refresh_error(wrong, grant.refresh_token)
    assert (type(err), err.reason, err.kind, err.status) == (
        ProviderConfigError,
        "invalid_client",
        "provider_config",
        401,
    )
    assert "not-the-secret" not in str(err) and "not-the-secret" not in repr(err)
    code, pkce = consent(wrong)
    with pytest.raises(ProviderConfigError) as exchange:
        wrong.exchange_code(code=code, code_verifier=pkce.verifier, redirect_uri=REDIRECT)
    assert exchange.value.reason == "invalid_client"


@pytest.mark.parametrize("status", ["unauthorized_client", "deleted_client"])
def test_disabled_client_is_a_provider_config_error(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, status: str
) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    google.fake.set_client_status(status)
    err = refresh_error(oauth, grant.refresh_token)
    assert (type(err), err.reason) == (ProviderConfigError, status)


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_server_errors_and_request_timeouts_are_transient(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, status: int
) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    google.fake.fail_next("token", status)
    err = refresh_error(oauth, grant.refresh_token)
    assert (type(err), err.reason, err.status, err.kind) == (
        TransientProviderError,
        f"http_{status}",
        status,
        "transient",
    )
    assert oauth.refresh(grant.refresh_token).access_token, "the next call succeeds"


def test_rate_limit_is_transient_and_honours_retry_after(oauth: GoogleOAuthClient, google: FakeGoogleServer) -> None:
    grant = connect(oauth)
    assert grant.refresh_token is not None
    google.fake.fail_next("token", 429, retry_after=17)
    err = refresh_error(oauth, grant.refresh_token)
    assert isinstance(err, QuotaExceeded) and isinstance(err, TransientProviderError)
    assert (err.api, err.reason, err.retry_after) == ("token", "rate_limited", 17.0)
    google.fake.fail_next("token", 503)
    later = refresh_error(oauth, grant.refresh_token)
    assert isinstance(later, TransientProviderError) and later.retry_after is None


@pytest.mark.parametrize("error", ["temporarily_unavailable", "server_error"])
def test_transient_oauth_error_codes_are_transient(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, error: str
) -> None:
    google.fake.fail_next("token", 400, body=f'{{"error": "{error}"}}')
    err = refresh_error(oauth, "1//0anything")
    assert (type(err), err.reason) == (TransientProviderError, error)


def test_hanging_token_endpoint_is_a_timeout(google: FakeGoogleServer) -> None:
    client = make_client(google, timeout=0.3)
    grant = connect(client)
    assert grant.refresh_token is not None
    google.fake.hang_next("token", 1.0)
    err = refresh_error(client, grant.refresh_token)
    assert (type(err), err.reason) == (TransientProviderError, "timeout")
    client.close()
    # The abandoned request still reaches the fake after its hang: wait, so it counts in no other test.
    deadline = time.monotonic() + 10
    while google.fake.total_refresh_calls < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_google_is_a_network_error(google: FakeGoogleServer) -> None:
    client = make_client(google, url=f"http://127.0.0.1:{closed_port()}")
    err = refresh_error(client, "1//0secret-refresh-token")
    assert (type(err), err.reason) == (TransientProviderError, "network")
    assert_no_secret(err, "1//0secret-refresh-token")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "<html>Service temporarily garbled</html>"),
        (200, '{"token_type": "Bearer", "expires_in": 3599}'),
        (200, '{"access_token": "ya29.x", "expires_in": "soon"}'),
        (200, '["not", "an", "object"]'),
        (400, "<html><body>Bad Request</body></html>"),
        (401, ""),
    ],
)
def test_malformed_answers_are_bad_response(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, status: int, body: str
) -> None:
    google.fake.fail_next("token", status, body=body)
    err = refresh_error(oauth, "1//0anything")
    assert (type(err), err.reason) == (TransientProviderError, "bad_response")


@pytest.mark.parametrize(
    ("header", "expected"),
    [("17", 17.0), ("-5", 0.0), ("inf", None), ("nan", None), ("1e400", None), ("soon", None)],
)
def test_retry_after_in_seconds_is_a_finite_delay_or_nothing(header: str, expected: float | None) -> None:
    from common.google_oauth import _retry_after

    assert _retry_after(httpx.Response(429, headers={"Retry-After": header})) == expected


def test_retry_after_as_an_http_date_counts_from_now_whatever_its_zone_spelling() -> None:
    import datetime as dt
    from email.utils import format_datetime

    from common.google_oauth import _retry_after

    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    for header in (format_datetime(later, usegmt=True), format_datetime(later.replace(tzinfo=None))):  # GMT, -0000
        delay = _retry_after(httpx.Response(503, headers={"Retry-After": header}))
        assert delay is not None and 100 < delay <= 120, header


def test_the_token_call_goes_through_the_environments_proxy_unless_no_proxy_names_the_host(
    google: FakeGoogleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As httpx did (trust_env): a deployment that reaches Google through an egress proxy keeps working."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    via_proxy = make_client(google)
    err = refresh_error(via_proxy, "1//0secret-refresh-token")
    assert (type(err), err.reason) == (TransientProviderError, "network"), "the (closed) proxy was not used"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = make_client(google)
    grant = connect(direct)
    assert grant.refresh_token is not None and direct.refresh(grant.refresh_token).access_token
