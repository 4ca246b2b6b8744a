"""Business Profile API behaviour: accounts, locations and daily metrics for an authenticated user."""

from __future__ import annotations

import datetime
from typing import Any

from starlette.datastructures import QueryParams

from services.fake_google import errors
from services.fake_google.data import METRICS, expected_metric_value
from services.fake_google.state import FakeGoogle, Reply

_LOCATION_FIELDS = ("name", "title")


def _page(params: QueryParams, default: int, maximum: int) -> tuple[int, int] | None:
    raw_size = params.get("pageSize")
    token = params.get("pageToken") or ""
    try:
        size = int(raw_size) if raw_size else 0
        offset = int(token[1:]) if token else 0
    except ValueError:
        return None
    if size < 0 or size > maximum or offset < 0 or (token and not token.startswith("p")):
        return None
    return (size or default), offset


def _bad_page(maximum: int) -> Reply:
    return errors.api_error(400, f"pageSize must be between 0 and {maximum}, pageToken one that was returned.")


def accounts(fake: FakeGoogle, user: str, params: QueryParams) -> Reply:
    """GET accountmanagement/v1/accounts."""
    page = _page(params, 20, 20)
    if page is None:
        return _bad_page(20)
    size, offset = page
    all_accounts = fake.layout_for(user).accounts
    page_items = all_accounts[offset : offset + size]
    items = [{"name": a.name, "accountName": a.account_name, "type": "PERSONAL"} for a in page_items]
    # Like Google, empty repeated fields are left out of the JSON.
    body: dict[str, Any] = {"accounts": items} if items else {}
    if offset + size < len(all_accounts):
        body["nextPageToken"] = f"p{offset + size}"
    return 200, body


def locations(fake: FakeGoogle, user: str, account_id: str, params: QueryParams) -> Reply:
    """GET businessinformation/v1/accounts/{id}/locations."""
    mask = params.get("readMask")
    if not mask:
        return errors.api_error(400, "Request contains an invalid argument: read_mask is required.")
    fields = [f for f in _LOCATION_FIELDS if f in mask.replace(" ", "").split(",")]
    page = _page(params, 10, 100)
    if page is None:
        return _bad_page(100)
    size, offset = page
    account = fake.layout_for(user).accounts_by_id.get(account_id)
    if account is None or fake.is_forbidden(account.name):
        return errors.PERMISSION_DENIED
    items: list[dict[str, Any]] = []
    for loc in account.locations[offset : offset + size]:
        if fake.is_forbidden(loc.name):
            return errors.PERMISSION_DENIED
        items.append({f: getattr(loc, f) for f in fields})
    body: dict[str, Any] = {"locations": items} if items else {}
    if offset + size < len(account.locations):
        body["nextPageToken"] = f"p{offset + size}"
    return 200, body


def _date(params: QueryParams, prefix: str) -> datetime.date:
    return datetime.date(int(params[f"{prefix}.year"]), int(params[f"{prefix}.month"]), int(params[f"{prefix}.day"]))


def performance(fake: FakeGoogle, user: str, location_id: str, params: QueryParams) -> Reply:
    """GET performance/v1/locations/{id}:fetchMultiDailyMetricsTimeSeries."""
    metrics = [m for value in params.getlist("dailyMetrics") for m in value.split(",") if m]
    if not metrics or any(m not in METRICS for m in metrics):
        return errors.api_error(400, "Request contains an invalid argument: dailyMetrics.")
    try:
        start = _date(params, "dailyRange.startDate")
        end = _date(params, "dailyRange.endDate")
    except (KeyError, ValueError):
        return errors.api_error(400, "Request contains an invalid argument: dailyRange.")
    if start > end:
        return errors.api_error(400, "Request contains an invalid argument: dailyRange start is after end.")
    name = f"locations/{location_id}"
    if location_id not in fake.layout_for(user).location_ids or fake.is_forbidden(name):
        return errors.PERMISSION_DENIED
    days = [start + datetime.timedelta(days=i) for i in range((end - start).days + 1)]
    series = []
    for metric in metrics:
        dated = []
        for day in days:
            entry: dict[str, Any] = {"date": {"year": day.year, "month": day.month, "day": day.day}}
            value = expected_metric_value(name, metric, day)
            if value:
                entry["value"] = str(value)
            dated.append(entry)
        series.append({"dailyMetric": metric, "timeSeries": {"datedValues": dated}})
    return 200, {"multiDailyMetricTimeSeries": [{"dailyMetricTimeSeries": series}]}
