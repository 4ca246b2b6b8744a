"""An integration's insights: one daily metric per location as a chart (30 or 90 days) and as a table."""

from __future__ import annotations

import datetime as dt

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from common.errors import IntegrationNotFound
from services.api.state import api_state
from services.api.web import queries
from services.api.web.chart import line_chart
from services.api.web.integrations_page import not_found, page_target
from services.api.web.templating import render

RANGES = (30, 90)
# Google's metric names, as a person reads them.
METRIC_NAMES = {
    "BUSINESS_IMPRESSIONS_DESKTOP_MAPS": "Views on Maps (desktop)",
    "BUSINESS_IMPRESSIONS_DESKTOP_SEARCH": "Views on Search (desktop)",
    "BUSINESS_IMPRESSIONS_MOBILE_MAPS": "Views on Maps (mobile)",
    "BUSINESS_IMPRESSIONS_MOBILE_SEARCH": "Views on Search (mobile)",
    "BUSINESS_CONVERSATIONS": "Conversations",
    "BUSINESS_DIRECTION_REQUESTS": "Direction requests",
    "CALL_CLICKS": "Calls",
    "WEBSITE_CLICKS": "Website clicks",
    "BUSINESS_BOOKINGS": "Bookings",
    "BUSINESS_FOOD_ORDERS": "Food orders",
    "BUSINESS_FOOD_MENU_CLICKS": "Menu clicks",
}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " ").capitalize())


async def insights_page(request: Request) -> Response:
    target = await page_target(request)
    if isinstance(target, Response):
        return target
    session, user_id, iid = target
    days = 90 if request.query_params.get("days") == "90" else 30
    end = dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=days)
    wanted = request.query_params.get("metric") or None
    sessions = api_state(request).container.sessions

    def load() -> tuple[queries.Card, list[str], str | None, list[tuple[str, dt.date, int]], dict[str, str]]:
        card = queries.card(sessions, user_id, iid)
        return (card, *queries.series(sessions, user_id, iid, wanted, start))

    try:
        card, metrics, chosen, rows, titles = await anyio.to_thread.run_sync(load)
    except IntegrationNotFound:
        return not_found(request)
    chart = line_chart(rows, start, end, titles)
    locations = sorted({loc for loc, _, _ in rows})
    table: dict[dt.date, dict[str, int]] = {}
    for loc, day, value in rows:
        table.setdefault(day, {})[loc] = value
    return render(
        request,
        "insights.html",
        session=session,
        csrf=session.csrf_token,
        card=card,
        metrics=[(m, metric_name(m)) for m in metrics],
        chosen=chosen,
        chosen_name=metric_name(chosen) if chosen else "",
        days=days,
        ranges=RANGES,
        chart=chart,
        locations=[(loc, titles.get(loc) or loc) for loc in locations],
        table=sorted(table.items(), reverse=True),
    )


routes: list[BaseRoute] = [Route("/web/integrations/{id}", insights_page, methods=["GET"])]
