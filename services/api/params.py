"""Parsing what the client sends: path ids and date ranges, rejected with 4xx before any query runs."""

from __future__ import annotations

import datetime as dt
import re

from starlette.requests import Request

from services.api.errors import bad_request, not_found

MAX_ID = 2**63 - 1
MAX_INSIGHT_DAYS = 550
DEFAULT_INSIGHT_DAYS = 30
ID_PATTERN = re.compile(r"[1-9][0-9]{0,18}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def integration_id(request: Request) -> int:
    """The `{id}` path parameter; anything that cannot be an integration id is a 404, like an unknown one."""
    raw = request.path_params.get("id", "")
    if not isinstance(raw, str) or not ID_PATTERN.fullmatch(raw) or int(raw) > MAX_ID:
        raise not_found()
    request.state.integration_id = int(raw)
    return int(raw)


def date_range(request: Request, today: dt.date) -> tuple[dt.date, dt.date]:
    """`start` and `end` (inclusive, YYYY-MM-DD); defaults: the last 30 days up to today."""
    end = _date(request, "end") or today
    start = _date(request, "start") or _days_before(end, DEFAULT_INSIGHT_DAYS - 1)
    if start > end:
        raise bad_request("start must not be after end.")
    if (end - start).days + 1 > MAX_INSIGHT_DAYS:
        raise bad_request(f"The range may span at most {MAX_INSIGHT_DAYS} days.")
    return start, end


def _days_before(day: dt.date, days: int) -> dt.date:
    try:
        return day - dt.timedelta(days=days)
    except OverflowError:  # near year 1
        return dt.date.min


def _date(request: Request, name: str) -> dt.date | None:
    raw = request.query_params.get(name)
    if raw is None:  # an empty value is no date either: 400 below, as the OpenAPI document says
        return None
    if not _DATE.fullmatch(raw):
        raise bad_request(f"{name} must be a date as YYYY-MM-DD.")
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{name} is not a valid date: {raw}.") from None
