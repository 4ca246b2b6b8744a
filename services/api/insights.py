"""`GET /integrations/{id}/insights` in pages: a limit, a cursor, and the next page's URL in a `Link` header.

The body stays the contract's JSON list; the next page is `Link: <url>; rel="next"` (RFC 8288, as GitHub's
API pages), so a client that reads one answer keeps working and never gets an unbounded one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from services.api.errors import bad_request
from services.api.queries import InsightKey, list_insights

DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
_LIMIT = re.compile(r"[1-9][0-9]{0,3}")
_MAX_CURSOR = 512
_SEP = "\x1f"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class PageRequest:
    """What the client asked for: the range, how many rows, and after which row."""

    start: dt.date
    end: dt.date
    limit: int
    after: InsightKey | None


def page_request(request: Request, start: dt.date, end: dt.date) -> PageRequest:
    """`limit` (1 to 5000, default 1000) and `cursor` (from a previous answer's Link) of the query; 400 otherwise."""
    raw = request.query_params.get("limit")
    if raw is None:
        limit = DEFAULT_LIMIT
    elif _LIMIT.fullmatch(raw) and int(raw) <= MAX_LIMIT:
        limit = int(raw)
    else:
        raise bad_request(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    cursor = request.query_params.get("cursor")
    return PageRequest(start, end, limit, None if cursor is None else _decode(cursor))


def _encode(key: InsightKey) -> str:
    day, location, metric = key
    raw = _SEP.join((day.isoformat(), location, metric)).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(cursor: str) -> InsightKey:
    invalid = bad_request("cursor is not one this API gave out; start again without it.")
    if len(cursor) > _MAX_CURSOR:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        day, location, metric = raw.split(_SEP)
        if not _DATE.fullmatch(day):
            raise ValueError(day)
        return dt.date.fromisoformat(day), location, metric
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        raise invalid from None


def render_page(
    sessions: sessionmaker[Session], user_id: int, integration_id: int, page: PageRequest
) -> tuple[bytes, str | None]:
    """The page's JSON body and the cursor of the next page (None on the last); run it in a worker thread,
    so neither the query nor the encoding of thousands of rows holds the event loop."""
    rows = list_insights(
        sessions, user_id, integration_id, page.start, page.end, after=page.after, limit=page.limit + 1
    )
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    body = json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if not more:
        return body, None
    last = rows[-1]
    return body, _encode((dt.date.fromisoformat(last["date"]), last["location"], last["metric"]))


def next_link(base_url: str, path: str, page: PageRequest, cursor: str) -> str:
    """The `Link` header value of the next page, under PUBLIC_BASE_URL."""
    query = urlencode(
        {"start": page.start.isoformat(), "end": page.end.isoformat(), "limit": page.limit, "cursor": cursor}
    )
    return f'<{base_url.rstrip("/")}{path}?{query}>; rel="next"'
