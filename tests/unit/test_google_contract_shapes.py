"""Every answer shape ARCHITECTURE.md's "Google behaviour" section allows, served over real HTTP by the fake.

The fake serves a canned body for one call (`fail_next(endpoint, status, body=...)`), so these tests check
what an outside fake that follows only the contract may send, not what our fake happens to send.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.errors import (
    AccessTokenRejected,
    ProviderConfigError,
    QuotaExceeded,
    ReauthRequired,
    TransientProviderError,
)
from common.gbp_client import GbpClient, GbpUrls
from common.google_oauth import BUSINESS_SCOPE, GoogleOAuthClient
from services.fake_google import FakeGoogleServer
from tests.unit.test_google_oauth import make_client, refresh_error

SCOPE = f"openid email {BUSINESS_SCOPE}"
REDIRECT = "http://127.0.0.1:8000/oauth/google/callback"


@pytest.fixture
def oauth(google: FakeGoogleServer) -> Iterator[GoogleOAuthClient]:
    client = make_client(google)
    yield client
    client.close()


@pytest.fixture
def gbp(google: FakeGoogleServer) -> Iterator[GbpClient]:
    env = google.env()
    with httpx.Client(timeout=5) as http:
        yield GbpClient(
            GbpUrls(env["GBP_ACCOUNT_MANAGEMENT_URL"], env["GBP_BUSINESS_INFORMATION_URL"], env["GBP_PERFORMANCE_URL"]),
            http,
        )


def serve(google: FakeGoogleServer, endpoint: str, body: Any, status: int = 200, count: int = 1) -> None:
    google.fake.fail_next(endpoint, status, count=count, body=body if isinstance(body, str) else json.dumps(body))


def exchange(oauth: GoogleOAuthClient) -> Any:
    return oauth.exchange_code(code="any-code", code_verifier="v" * 43, redirect_uri=REDIRECT)


# --- token endpoint: success shapes -----------------------------------------------------------------------


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
@pytest.mark.parametrize("expires_in", [3599, "3599"])
def test_code_exchange_without_id_token_any_token_type_and_expires_in_as_number_or_string(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, token_type: str, expires_in: object
) -> None:
    serve(
        google,
        "token",
        {
            "access_token": "ya29.a",
            "refresh_token": "1//r",
            "expires_in": expires_in,
            "token_type": token_type,
            "scope": SCOPE,
        },
    )
    before = time.time()
    grant = exchange(oauth)
    assert (grant.access_token, grant.refresh_token, grant.id_token_claims) == ("ya29.a", "1//r", {})
    assert BUSINESS_SCOPE in grant.scopes
    assert before + 3500 < grant.expires_at.timestamp() < time.time() + 3600


@pytest.mark.parametrize("scope", [SCOPE, None])
def test_refresh_without_refresh_token_keeps_the_old_one_with_or_without_scope(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, scope: str | None
) -> None:
    body: dict[str, Any] = {"access_token": "ya29.b", "expires_in": 3599, "token_type": "Bearer"}
    if scope is not None:
        body["scope"] = scope
    serve(google, "token", body)
    grant = oauth.refresh("1//old")
    assert (grant.access_token, grant.refresh_token) == ("ya29.b", "1//old")


def test_refresh_whose_scope_lacks_business_manage_is_missing_scope(
    oauth: GoogleOAuthClient, google: FakeGoogleServer
) -> None:
    serve(google, "token", {"access_token": "ya29.b", "expires_in": 3599, "token_type": "Bearer", "scope": "email"})
    err = refresh_error(oauth, "1//old")
    assert (type(err), err.reason) == (ReauthRequired, "missing_scope")


@pytest.mark.parametrize("expires_in", [None, "soon", "Infinity", float("inf"), [3599], -60, "99999999999999"])
def test_missing_or_unusable_expires_in_is_a_clear_bad_response(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, expires_in: object
) -> None:
    body: dict[str, Any] = {"access_token": "ya29.b", "token_type": "Bearer", "scope": SCOPE}
    if expires_in is not None:
        body["expires_in"] = expires_in
    serve(google, "token", body)
    err = refresh_error(oauth, "1//old")
    assert (type(err), err.reason) == (TransientProviderError, "bad_response")
    assert "expires_in" in err.message


# --- token endpoint: error shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "description", ["Token has been expired or revoked.", "Bad Request", "", None, "Account has been deleted"]
)
def test_invalid_grant_with_any_description_is_reauth(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, description: str | None
) -> None:
    body: dict[str, Any] = {"error": "invalid_grant"}
    if description is not None:
        body["error_description"] = description
    serve(google, "token", body, status=400)
    err = refresh_error(oauth, "1//old")
    assert (type(err), err.reason) == (ReauthRequired, "invalid_grant")


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client"])
@pytest.mark.parametrize("description", ["Unauthorized", None])
def test_401_client_errors_are_provider_config(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, error: str, description: str | None
) -> None:
    body: dict[str, Any] = {"error": error}
    if description is not None:
        body["error_description"] = description
    serve(google, "token", body, status=401)
    for call in (lambda: oauth.refresh("1//old"), lambda: exchange(oauth)):
        with pytest.raises(ProviderConfigError) as err:
            call()
        assert err.value.reason == error
        serve(google, "token", body, status=401)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
@pytest.mark.parametrize(
    "body", ['{"error": "server_error"}', '{"error": "rate_limit_exceeded"}', "<html>oops</html>", "", "{}"]
)
def test_5xx_and_429_with_or_without_json_are_transient(
    oauth: GoogleOAuthClient, google: FakeGoogleServer, status: int, body: str
) -> None:
    google.fake.fail_next("token", status, body=body, retry_after=7)
    err = refresh_error(oauth, "1//old")
    # A 429 is pacing (QuotaExceeded, a TransientProviderError): deferred, never a spent retry (rule 8).
    assert type(err) is (QuotaExceeded if status == 429 else TransientProviderError)
    assert (err.status, err.retry_after) == (status, 7.0)


# --- Business Profile: pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("last_page", [{}, {"nextPageToken": ""}])
def test_accounts_pages_end_on_an_absent_or_empty_next_page_token(
    gbp: GbpClient, google: FakeGoogleServer, last_page: dict[str, Any]
) -> None:
    serve(google, "accounts", {"accounts": [{"name": "accounts/1"}], "nextPageToken": "p2"})
    serve(google, "accounts", {"accounts": [{"name": "accounts/2"}], **last_page})
    assert list(gbp.accounts("ya29.x")) == ["accounts/1", "accounts/2"]
    assert google.fake.stats()["calls"]["accounts"] == 2


def test_an_empty_page_without_accounts_or_locations_is_no_accounts(gbp: GbpClient, google: FakeGoogleServer) -> None:
    serve(google, "accounts", {})
    assert list(gbp.accounts("ya29.x")) == []
    serve(google, "locations", {})
    assert list(gbp.locations("ya29.x", "accounts/1")) == []


def test_locations_pages_end_on_an_empty_next_page_token(gbp: GbpClient, google: FakeGoogleServer) -> None:
    serve(google, "locations", {"locations": [{"name": "locations/1", "title": "A"}], "nextPageToken": "p2"})
    serve(google, "locations", {"locations": [{"name": "locations/2"}], "nextPageToken": ""})
    got = list(gbp.locations("ya29.x", "accounts/1"))
    assert [(loc.name, loc.title) for loc in got] == [("locations/1", "A"), ("locations/2", "")]


def test_page_sizes_stay_within_the_documented_limits(gbp: GbpClient, google: FakeGoogleServer) -> None:
    """The real fake checks pageSize; an outside one may refuse more than 20 accounts or 100 locations a page."""
    seen: list[httpx.URL] = []
    with httpx.Client(timeout=5, event_hooks={"request": [lambda r: seen.append(r.url)]}) as http:
        env = google.env()
        client = GbpClient(
            GbpUrls(env["GBP_ACCOUNT_MANAGEMENT_URL"], env["GBP_BUSINESS_INFORMATION_URL"], env["GBP_PERFORMANCE_URL"]),
            http,
        )
        serve(google, "accounts", {"accounts": [{"name": "accounts/1"}]})
        serve(google, "locations", {"locations": []})
        list(client.accounts("ya29.x"))
        list(client.locations("ya29.x", "accounts/1"))
    assert int(seen[0].params["pageSize"]) <= 20
    assert int(seen[1].params["pageSize"]) <= 100
    assert seen[1].params["readMask"] == "name,title"
    assert seen[1].path.endswith("/accounts/1/locations")


# --- Business Profile: metrics ------------------------------------------------------------------------------


def _dv(day: dt.date, value: object = None) -> dict[str, Any]:
    out: dict[str, Any] = {"date": {"year": day.year, "month": day.month, "day": day.day}}
    if value is not None:
        out["value"] = value
    return out


def test_metric_values_as_strings_numbers_or_omitted(gbp: GbpClient, google: FakeGoogleServer) -> None:
    d1, d2, d3 = dt.date(2024, 2, 28), dt.date(2024, 2, 29), dt.date(2024, 3, 1)
    serve(
        google,
        "performance",
        {
            "multiDailyMetricTimeSeries": [
                {
                    "dailyMetricTimeSeries": [
                        {
                            "dailyMetric": "WEBSITE_CLICKS",
                            "timeSeries": {"datedValues": [_dv(d1, "123"), _dv(d2), _dv(d3, 7)]},
                        },
                        {"dailyMetric": "CALL_CLICKS"},
                        {"dailyMetric": "BUSINESS_CONVERSATIONS", "timeSeries": {}},
                    ]
                },
                {},
            ]
        },
    )
    got = gbp.daily_metrics("ya29.x", "locations/9", d1, d3)
    assert [(v.location, v.metric, v.date, v.value) for v in got] == [
        ("locations/9", "WEBSITE_CLICKS", d1, 123),
        ("locations/9", "WEBSITE_CLICKS", d2, 0),
        ("locations/9", "WEBSITE_CLICKS", d3, 7),
    ]


@pytest.mark.parametrize("body", [{}, {"multiDailyMetricTimeSeries": []}])
def test_no_metric_series_is_no_values(gbp: GbpClient, google: FakeGoogleServer, body: dict[str, Any]) -> None:
    serve(google, "performance", body)
    assert gbp.daily_metrics("ya29.x", "locations/9", dt.date(2024, 1, 1), dt.date(2024, 1, 2)) == []


@pytest.mark.parametrize(
    "body",
    [
        {"multiDailyMetricTimeSeries": [{"dailyMetricTimeSeries": [{"timeSeries": {"datedValues": []}}]}]},
        {"multiDailyMetricTimeSeries": [{"dailyMetricTimeSeries": [{"dailyMetric": "X", "timeSeries": None}]}]},
        {"multiDailyMetricTimeSeries": None},
        {"multiDailyMetricTimeSeries": "nope"},
        {"multiDailyMetricTimeSeries": [{"dailyMetricTimeSeries": [{"dailyMetric": "X", "timeSeries": []}]}]},
        {
            "multiDailyMetricTimeSeries": [
                {"dailyMetricTimeSeries": [{"dailyMetric": "X", "timeSeries": {"datedValues": [{"value": "1"}]}}]}
            ]
        },
    ],
)
def test_metric_shapes_the_contract_does_not_promise_are_bad_response(
    gbp: GbpClient, google: FakeGoogleServer, body: dict[str, Any]
) -> None:
    serve(google, "performance", body)
    with pytest.raises(TransientProviderError) as err:
        gbp.daily_metrics("ya29.x", "locations/9", dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    assert err.value.reason == "bad_response"


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("accounts", {"accounts": [{"title": "no name"}]}),
        ("accounts", {"accounts": None}),
        ("accounts", {"accounts": "nope"}),
        ("locations", {"locations": [{"title": "no name"}]}),
        ("locations", {"locations": None}),
    ],
)
def test_list_shapes_the_contract_does_not_promise_are_bad_response(
    gbp: GbpClient, google: FakeGoogleServer, endpoint: str, body: dict[str, Any]
) -> None:
    serve(google, endpoint, body)
    with pytest.raises(TransientProviderError) as err:
        if endpoint == "accounts":
            list(gbp.accounts("ya29.x"))
        else:
            list(gbp.locations("ya29.x", "accounts/1"))
    assert err.value.reason == "bad_response"


# --- Business Profile: errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["accounts", "locations", "performance"])
def test_api_error_bodies_map_to_the_contracts_classes(gbp: GbpClient, google: FakeGoogleServer, endpoint: str) -> None:
    calls = {
        "accounts": lambda: list(gbp.accounts("ya29.x")),
        "locations": lambda: list(gbp.locations("ya29.x", "accounts/1")),
        "performance": lambda: gbp.daily_metrics("ya29.x", "locations/9", dt.date(2024, 1, 1), dt.date(2024, 1, 2)),
    }
    cases: list[tuple[int, Any, type[Exception]]] = [
        (
            403,
            {"error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}},
            ReauthRequired,
        ),
        (
            401,
            {
                "error": {
                    "code": 401,
                    "message": "Request had invalid authentication credentials.",
                    "status": "UNAUTHENTICATED",
                }
            },
            AccessTokenRejected,
        ),
        (401, "", AccessTokenRejected),
        (
            429,
            {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
            TransientProviderError,
        ),
        (429, "", TransientProviderError),
        (503, "<html>unavailable</html>", TransientProviderError),
    ]
    for status, body, kind in cases:
        serve(google, endpoint, body, status=status)
        with pytest.raises(kind):
            calls[endpoint]()
