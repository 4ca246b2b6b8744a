"""What a stranger can do to the API without a key: hostile methods, label explosions, slow scrapes, sniffing."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import insert
from structlog.testing import capture_logs

from common.models import Insight
from common.tasks import SYNC_INTEGRATION
from services.api.metrics import ApiMetrics
from tests.conftest import make_settings
from tests.support.api import Api, build_app, close, drain, messages_for
from tests.support.net import free_port
from tests.support.openapi import conformance_errors

pytest_plugins = ["tests.support.api"]

HOSTILE_METHOD = "eyJ" * 4990 + "000001"  # the review's 15 KB method: a JWT prefix that never completes


def series(metrics: ApiMetrics) -> int:
    return sum(len(family.samples) for family in metrics.registry.collect())


def metrics_of(api: Api) -> ApiMetrics:
    metrics = api.client.app.state.api.metrics  # type: ignore[attr-defined]
    assert isinstance(metrics, ApiMetrics)
    return metrics


def test_distinct_methods_leave_the_metric_series_fixed(api: Api) -> None:
    for method, path in (("FOO", "/healthz"), ("BAR", "/nowhere"), ("GET", "/healthz")):
        api.client.request(method, path)
    before = series(metrics_of(api))
    for n in range(2_000):
        assert api.client.request(f"M{n}", "/healthz").status_code == 405
    assert api.client.request(HOSTILE_METHOD, "/nowhere").status_code == 404
    after = series(metrics_of(api))
    assert after == before, f"{after - before} new series"
    text = api.client.get("/metrics").text
    assert 'integrations_api_requests_total{method="OTHER",route="/healthz",status="405"} 2001.0' in text
    assert 'method="M1"' not in text


def test_a_hostile_method_is_logged_as_other_and_never_reaches_the_scrubber(api: Api) -> None:
    with capture_logs() as logs:
        resp = api.client.request(HOSTILE_METHOD, "/healthz")
    assert resp.status_code == 405
    [line] = [e for e in logs if e["event"] == "http.request"]
    assert (line["method"], line["route"], line["status"]) == ("OTHER", "/healthz", 405)


class _LoopProbe(Collector):
    """A collector that notes whether it was collected on a thread running an event loop."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        yield GaugeMetricFamily("probe", "probe", value=1)


def test_metrics_are_rendered_off_the_event_loop(api: Api) -> None:
    probe = _LoopProbe()
    metrics_of(api).registry.register(probe)
    assert "probe 1.0" in api.client.get("/metrics").text
    assert probe.on_loop == [False]


@pytest.fixture
def private_metrics(pg_url: str, google, api_vhost: str) -> Iterator[tuple[Api, int]]:
    from starlette.testclient import TestClient

    port = free_port()
    settings = replace(make_settings(pg_url, google, broker_url=api_vhost), metrics_port=port)
    app, c = build_app(settings, api_vhost)
    with TestClient(app) as client:
        yield Api(client, c, api_vhost, google), port
    close(c)


def test_with_metrics_port_set_metrics_leave_the_public_port(private_metrics: tuple[Api, int]) -> None:
    api, port = private_metrics
    api.client.get("/healthz")
    public = api.client.get("/metrics")
    assert public.status_code == 404 and public.json()["error"]["code"] == "not_found"
    private = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert private.status_code == 200
    assert 'integrations_api_requests_total{method="GET",route="/healthz",status="200"} 1.0' in private.text


def test_every_answer_says_nosniff_and_no_store(api: Api) -> None:
    _, headers = api.user()
    answers = [
        api.client.get("/healthz"),
        api.client.get("/integrations", headers=headers),
        api.client.get("/integrations"),  # 401
        api.client.get("/nowhere"),
        api.client.get("/openapi.json"),
        api.client.get("/metrics"),
    ]
    for resp in answers:
        assert resp.headers["x-content-type-options"] == "nosniff", resp.url
        assert resp.headers["cache-control"] == "no-store", resp.url
        assert "content-security-policy" not in resp.headers or resp.headers["content-type"].startswith("text/html")


def test_html_pages_carry_a_strict_csp_with_no_inline_script_or_style(api: Api) -> None:
    pages = [
        api.client.get("/oauth/google/done?r=forged"),
        api.client.get("/oauth/google/callback?state=nope&code=x"),
        api.client.get("/integrations/1/reconnect?token=abc.def"),
    ]
    for resp in pages:
        assert resp.headers["content-type"].startswith("text/html"), resp.url
        csp = resp.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
        assert directives["default-src"] == "'none'"
        assert "'unsafe-inline'" not in csp and "sha256-" not in csp
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
        assert "<style" not in resp.text and "<script>" not in resp.text and "style=" not in resp.text
        assert '<link rel="stylesheet" href="/static/app.css">' in resp.text
        assert resp.headers["x-content-type-options"] == "nosniff"


def test_a_hundred_syncs_in_a_row_are_mostly_429_and_publish_a_bounded_number(api: Api) -> None:
    _, headers = api.user()
    _, other = api.user()
    iid = api.connect(headers)
    drain(api.amqp_url, "sync")
    settings = api.c.settings
    started = time.monotonic()
    answers = [api.client.post(f"/integrations/{iid}/sync", headers=headers) for _ in range(100)]
    elapsed = time.monotonic() - started
    accepted = [r for r in answers if r.status_code == 202]
    limited = [r for r in answers if r.status_code == 429]
    assert len(accepted) + len(limited) == 100
    # The bound follows from the bucket: its burst plus what it refilled while the requests ran.
    bound = settings.api_rate_limit_burst + math.ceil(elapsed * settings.api_rate_limit_per_minute / 60)
    assert len(accepted) <= bound and len(limited) >= 100 - bound
    for resp in limited:
        assert int(resp.headers["retry-after"]) >= 1
        assert resp.json()["error"]["code"] == "rate_limited"
    # The accepted ones are folded into the one queued sync (nothing consumes it here): one message, one message id.
    assert len(messages_for(api.amqp_url, "sync", SYNC_INTEGRATION, iid)) == 1
    assert len({resp.json()["message_id"] for resp in accepted}) == 1
    assert conformance_errors(api.client.get("/openapi.json").json(), "/integrations/{id}/sync", limited[0]) == []
    # The same key is refused on the other work-creating endpoints; another key is not.
    assert api.client.post(f"/integrations/{iid}/refresh", headers=headers).status_code == 429
    assert api.client.post("/integrations/google/connect", headers=headers).status_code == 429
    assert api.client.post("/integrations/google/connect", headers=other).status_code == 200
    assert api.client.get(f"/integrations/{iid}", headers=headers).status_code == 200, "reads are not limited"


def _store_grid(api: Api, iid: int, first: dt.date, days: int, locations: int, metrics: int) -> None:
    rows = [
        {"integration_id": iid, "location": f"locations/{n}", "metric": f"METRIC_{m}", "date": day, "value": n + m}
        for day in (first + dt.timedelta(days=d) for d in range(days))
        for n in range(locations)
        for m in range(metrics)
    ]
    with api.c.sessions.begin() as s:
        s.execute(insert(Insight), rows)


def _next_link(resp: httpx.Response) -> str | None:
    link = resp.headers.get("link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


def test_insights_are_paged_by_a_cursor_in_a_link_header(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    first = dt.date(2025, 1, 1)
    _store_grid(api, iid, first, days=100, locations=5, metrics=5)  # 2,500 rows
    query = {"start": first.isoformat(), "end": (first + dt.timedelta(days=99)).isoformat()}

    resp = api.client.get(f"/integrations/{iid}/insights", params=query, headers=headers)
    assert resp.status_code == 200 and len(resp.json()) == 1000, "the documented default limit"
    seen = list(resp.json())
    pages = 1
    while (link := _next_link(resp)) is not None:
        url = httpx.URL(link)
        assert str(url).startswith(api.c.settings.public_base_url)
        assert url.path == f"/integrations/{iid}/insights"
        resp = api.client.get(f"{url.path}?{url.query.decode()}", headers=headers)
        assert resp.status_code == 200
        seen += resp.json()
        pages += 1
    assert pages == 3 and len(seen) == 2500
    assert conformance_errors(api.client.get("/openapi.json").json(), "/integrations/{id}/insights", resp) == []
    keys = [(r["date"], r["location"], r["metric"]) for r in seen]
    assert keys == sorted(keys) and len(set(keys)) == 2500, "in order, each row once"

    small = api.client.get(f"/integrations/{iid}/insights", params={**query, "limit": 7}, headers=headers)
    assert len(small.json()) == 7 and "limit=7" in (_next_link(small) or "")
    last = api.client.get(f"/integrations/{iid}/insights", params={**query, "limit": 5000}, headers=headers)
    assert len(last.json()) == 2500 and _next_link(last) is None


@pytest.mark.parametrize(
    "extra",
    [{"limit": "0"}, {"limit": "5001"}, {"limit": "ten"}, {"limit": "1" * 400}, {"cursor": "x"}, {"cursor": "%%"}],
)
def test_insights_refuse_a_bad_limit_or_cursor(api: Api, extra: dict[str, str]) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    resp = api.client.get(f"/integrations/{iid}/insights", params=extra, headers=headers)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_request"
