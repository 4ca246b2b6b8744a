"""What a stranger can do to the API without a key: hostile methods, label explosions, slow scrapes, sniffing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from structlog.testing import capture_logs

from services.api.metrics import ApiMetrics
from tests.conftest import make_settings
from tests.support.api import Api, build_app, close
from tests.support.net import free_port

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


def test_html_pages_carry_a_strict_csp_that_allows_their_own_style(api: Api) -> None:
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
        assert "'unsafe-inline'" not in csp and "script-src" not in directives
        assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
        for style in re.findall(r"<style>(.*?)</style>", resp.text, re.S):
            digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in directives["style-src"].split(), "the page's own style is allowed"
        assert resp.headers["x-content-type-options"] == "nosniff"
