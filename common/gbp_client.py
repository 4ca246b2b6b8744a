"""Google Business Profile APIs: accounts, locations and daily performance metrics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from common.errors import (
    AccessTokenRejected,
    ProviderConfigError,
    QuotaExceeded,
    ReauthRequired,
    TransientProviderError,
)
from common.google_oauth import MSG_PERMISSION_DENIED, _json_object, _retry_after
from common.quota import ACCOUNT_MANAGEMENT, BUSINESS_INFORMATION, PERFORMANCE, Pacer

DAILY_METRICS = (
    "BUSINESS_IMPRESSIONS_DESKTOP_MAPS",
    "BUSINESS_IMPRESSIONS_DESKTOP_SEARCH",
    "BUSINESS_IMPRESSIONS_MOBILE_MAPS",
    "BUSINESS_IMPRESSIONS_MOBILE_SEARCH",
    "BUSINESS_CONVERSATIONS",
    "BUSINESS_DIRECTION_REQUESTS",
    "CALL_CLICKS",
    "WEBSITE_CLICKS",
)


@dataclass(frozen=True)
class GbpUrls:
    account_management: str
    business_information: str
    performance: str


@dataclass(frozen=True)
class GbpLocation:
    account: str
    name: str
    title: str


@dataclass(frozen=True)
class DailyValue:
    location: str
    metric: str
    date: dt.date
    value: int


class GbpClient:
    """Calls the Business Profile APIs with a given access token; maps errors to our classes."""

    def __init__(self, urls: GbpUrls, http: httpx.Client, pacer: Pacer | None = None) -> None:
        self._urls = urls
        self._http = http
        self._pacer = pacer or Pacer()

    def accounts(self, token: str) -> Iterator[str]:
        url = f"{self._urls.account_management.rstrip('/')}/accounts"
        for page in self._pages(token, url, {"pageSize": 20}, ACCOUNT_MANAGEMENT):
            with _unexpected_shape("accounts"):
                names = [str(acc["name"]) for acc in page.get("accounts", [])]
            yield from names

    def locations(self, token: str, account: str) -> Iterator[GbpLocation]:
        url = f"{self._urls.business_information.rstrip('/')}/{account}/locations"
        for page in self._pages(token, url, {"pageSize": 100, "readMask": "name,title"}, BUSINESS_INFORMATION):
            with _unexpected_shape("locations"):
                found = [
                    GbpLocation(account, str(loc["name"]), str(loc.get("title", "")))
                    for loc in page.get("locations", [])
                ]
            yield from found

    def daily_metrics(
        self, token: str, location: str, start: dt.date, end: dt.date, metrics: tuple[str, ...] = DAILY_METRICS
    ) -> list[DailyValue]:
        url = f"{self._urls.performance.rstrip('/')}/{location}:fetchMultiDailyMetricsTimeSeries"
        params: list[tuple[str, str | int]] = [("dailyMetrics", m) for m in metrics]
        for prefix, day in (("dailyRange.startDate", start), ("dailyRange.endDate", end)):
            params += [(f"{prefix}.year", day.year), (f"{prefix}.month", day.month), (f"{prefix}.day", day.day)]
        body = self._get(token, url, params, PERFORMANCE)
        out: list[DailyValue] = []
        with _unexpected_shape("metrics"):
            for multi in body.get("multiDailyMetricTimeSeries", []):
                for series in multi.get("dailyMetricTimeSeries", []):
                    metric = str(series["dailyMetric"])
                    for dv in series.get("timeSeries", {}).get("datedValues", []):
                        d = dv["date"]
                        day = dt.date(int(d["year"]), int(d["month"]), int(d["day"]))
                        out.append(DailyValue(location, metric, day, int(dv.get("value", 0))))
        return out

    def _pages(self, token: str, url: str, params: dict[str, Any], api: str) -> Iterator[dict[str, Any]]:
        page_token: str | None = None
        while True:
            query = list(params.items()) + ([("pageToken", page_token)] if page_token else [])
            body = self._get(token, url, query, api)
            yield body
            page_token = body.get("nextPageToken") or None
            if not page_token:
                return

    def _get(self, token: str, url: str, params: list[tuple[str, Any]], api: str) -> dict[str, Any]:
        self._pacer.acquire(api)
        try:
            resp = self._http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException:
            raise TransientProviderError("timeout", "Business Profile API timed out") from None
        except httpx.HTTPError as exc:
            raise TransientProviderError("network", f"Could not reach Business Profile: {type(exc).__name__}") from None
        body = _json_object(resp)
        if resp.status_code == 200:
            if body is None:
                raise TransientProviderError("bad_response", "Business Profile answered 200 without JSON")
            return body
        if resp.status_code == 429:
            retry_after = _retry_after(resp)
            self._pacer.throttled(api, retry_after)
            raise QuotaExceeded(
                api,
                "rate_limited",
                f"Business Profile asked us to slow down ({api}, 429)",
                status=429,
                retry_after=retry_after,
            )
        raise _api_error(resp, body)


@contextmanager
def _unexpected_shape(what: str) -> Iterator[None]:
    """A 200 answer whose JSON is not the documented shape: bad_response, never a bare KeyError."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError):
        raise TransientProviderError("bad_response", f"Business Profile answered an unexpected {what} shape") from None


def _api_error(resp: httpx.Response, body: dict[str, Any] | None) -> Exception:
    status = resp.status_code
    err = body.get("error") if body else None
    api_status = str(err.get("status", "")) if isinstance(err, dict) else ""
    if status == 401:
        return AccessTokenRejected("unauthenticated", "Business Profile rejected the access token", status=status)
    if status == 403 and api_status in ("PERMISSION_DENIED", ""):
        return ReauthRequired("permission_denied", MSG_PERMISSION_DENIED, status=status)
    if status in (408, 429) or status >= 500:
        return TransientProviderError(
            f"http_{status}",
            f"Business Profile is unavailable ({status})",
            status=status,
            retry_after=_retry_after(resp),
        )
    if body is None:
        return TransientProviderError("bad_response", f"Business Profile answered {status} without JSON", status=status)
    return ProviderConfigError(f"http_{status}", f"Business Profile refused the request ({status} {api_status})")
