"""Operating the API: health, readiness, metrics, the OpenAPI document, and a broker that goes away."""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from common import sync_requests
from common.bootstrap import Container
from common.broker import make_broker
from common.models import Integration, utcnow
from common.tasks import INTEGRATION_CONNECTED, SYNC_INTEGRATION
from common.users import create_user
from services.scheduler import outbox
from tests.conftest import TEST_ADMIN_KEY, make_settings
from tests.support.api import Api, ApiServer, bearer, build_app, close, consent, create_vhost, rabbitmqctl, start
from tests.support.api import messages_for as queued
from tests.support.flows import connect, new_email
from tests.support.openapi import conformance_errors, resolve

pytest_plugins = ["tests.support.api"]

CONTRACT = {
    "/integrations/google/connect": {"post"},
    "/oauth/google/callback": {"get"},
    "/integrations": {"get"},
    "/integrations/{id}": {"get", "delete"},
    "/integrations/{id}/sync": {"post"},
    "/integrations/{id}/refresh": {"post"},
    "/integrations/{id}/insights": {"get"},
    "/admin/token-health": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/openapi.json": {"get"},
}


def test_healthz_and_readyz_when_everything_is_up(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"database": "ok", "broker": "ok"}


@pytest.fixture
def no_broker(pg_url: str, google) -> Iterator[tuple[TestClient, Container]]:
    """An API whose broker port is closed."""
    settings = make_settings(pg_url, google, broker_url=f"amqp://guest:guest@127.0.0.1:{_closed_port()}/%2F")
    app, c = build_app(settings, settings.broker_url)
    with TestClient(app) as client:
        yield client, c
    close(c)


def test_without_a_broker_sync_is_503_readyz_names_it_and_the_failure_is_counted(no_broker) -> None:
    client, c = no_broker
    user_id, key = create_user(c.sessions, new_email())
    iid = connect(c, user_id=user_id)

    resp = client.post(f"/integrations/{iid}/sync", headers=bearer(key))
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "broker_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] == "ok" and ready.json()["broker"] == "error"
    assert "broker" in ready.json()["error"]["message"]
    metrics = client.get("/metrics").text
    assert 'integrations_api_publish_failures_total{actor="sync_integration"} 1.0' in metrics


def test_readyz_names_the_database_when_it_is_unreachable(google, api_vhost: str) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/nowhere"
    app, c = build_app(make_settings(url, google, broker_url=api_vhost), api_vhost)
    with TestClient(app) as client:
        resp = client.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["database"] == "error" and resp.json()["broker"] == "ok"
        assert client.get("/healthz").status_code == 200, "liveness does not depend on the database"
        down = client.get("/integrations", headers=bearer("ik_whatever"))
        assert down.status_code == 503 and down.json()["error"]["code"] == "database_unavailable"
    close(c)


def test_metrics_count_requests_by_route_template(api: Api) -> None:
    _, headers = api.user()
    for n in (1, 2, 3):
        api.client.get(f"/integrations/{n}", headers=headers)
    text = api.client.get("/metrics").text
    assert 'integrations_api_requests_total{method="GET",route="/integrations/{id}",status="404"} 3.0' in text
    assert "integrations_api_request_duration_seconds_bucket" in text
    assert 'route="/integrations/1"' not in text


def test_openapi_document_describes_every_endpoint_of_the_contract(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path, methods in CONTRACT.items():
        assert methods <= set(doc["paths"][path]), path
        for method in methods:
            responses = doc["paths"][path][method]["responses"]
            assert responses, (path, method)
            for answer in responses.values():
                for media in answer.get("content", {}).values():
                    if "schema" in media:
                        resolve(doc, media["schema"])  # every $ref resolves
    assert doc["paths"]["/integrations/{id}"]["get"]["parameters"][0]["schema"]["type"] == "integer"
    insights = doc["paths"]["/integrations/{id}/insights"]["get"]
    limit = next(p for p in insights["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 5000) and "1000" in limit["description"]
    assert "Link" in insights["responses"]["200"]["headers"]
    for path, method in (("/integrations/{id}/sync", "post"), ("/integrations/{id}/refresh", "post")):
        assert "Retry-After" in doc["paths"][path][method]["responses"]["429"]["headers"], path
    assert "429" in doc["paths"]["/integrations/google/connect"]["post"]["responses"]


def test_real_responses_match_the_openapi_document(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    _, headers = api.user()
    _, other = api.user()
    iid = api.connect(headers)
    c = api.client
    seen: list[tuple[str, httpx.Response]] = [
        ("/integrations", c.get("/integrations", headers=headers)),
        ("/integrations", c.get("/integrations")),
        ("/integrations/{id}", c.get(f"/integrations/{iid}", headers=headers)),
        ("/integrations/{id}", c.get(f"/integrations/{iid}", headers=other)),
        ("/integrations/{id}", c.get("/integrations/abc", headers=headers)),
        ("/integrations/{id}/sync", c.post(f"/integrations/{iid}/sync", headers=headers)),
        ("/integrations/{id}/refresh", c.post(f"/integrations/{iid}/refresh", headers=headers)),
        ("/integrations/{id}/insights", c.get(f"/integrations/{iid}/insights", headers=headers)),
        ("/integrations/{id}/insights", c.get(f"/integrations/{iid}/insights?start=x", headers=headers)),
        ("/integrations/google/connect", c.post("/integrations/google/connect", headers=headers)),
        ("/integrations/google/connect", c.post("/integrations/google/connect", headers=headers, content=b"[]")),
        ("/oauth/google/callback", c.get("/oauth/google/callback?state=nope&code=x")),
        ("/oauth/google/callback", c.get("/oauth/google/callback?state=nope", headers={"Accept": "application/json"})),
        ("/oauth/google/done", c.get("/oauth/google/done?r=x", headers={"Accept": "application/json"})),
        ("/admin/token-health", c.get("/admin/token-health", headers=bearer(TEST_ADMIN_KEY))),
        ("/admin/token-health", c.get("/admin/token-health")),
        ("/healthz", c.get("/healthz")),
        ("/readyz", c.get("/readyz")),
        ("/metrics", c.get("/metrics")),
        ("/openapi.json", c.get("/openapi.json")),
    ]
    query = consent(start(c, headers))
    callback = c.get("/oauth/google/callback", params=query, follow_redirects=False)
    seen.append(("/oauth/google/callback", callback))
    location = httpx.URL(callback.headers["location"])
    done = c.get(f"{location.path}?{location.query.decode()}", headers={"Accept": "application/json"})
    seen.append(("/oauth/google/done", done))
    seen.append(("/integrations/{id}", c.delete(f"/integrations/{iid}", headers=headers)))
    seen.append(("/integrations/{id}/sync", c.post(f"/integrations/{iid}/sync", headers=headers)))

    problems = [p for template, resp in seen for p in conformance_errors(doc, template, resp)]
    assert problems == []


def test_a_broker_outage_gives_503_within_seconds_and_the_api_recovers_without_restart(pg_url: str, google) -> None:
    name = "it_api_outage_" + uuid.uuid4().hex[:8]
    url = create_vhost(name)
    app, c = build_app(make_settings(pg_url, google, broker_url=url), url)
    user_id, key = create_user(c.sessions, new_email())
    iid = connect(c, user_id=user_id)
    try:
        # The client's timeout is the "never a hang" bound: a hanging publish would raise here.
        with ApiServer(app) as server, httpx.Client(base_url=server.url, headers=bearer(key), timeout=10) as http:
            first = http.post(f"/integrations/{iid}/sync")
            assert first.status_code == 202
            # As when a worker starts it: the next request is not folded into it, so it must publish.
            sync_requests.release(c.sessions, iid, first.json()["message_id"])

            rabbitmqctl("delete_vhost", name)  # closes the API's connections and refuses new ones
            down = http.post(f"/integrations/{iid}/sync")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "broker_unavailable"
            assert http.get("/readyz").json()["broker"] == "error"
            assert http.get(f"/integrations/{iid}").status_code == 200, "reads do not need the broker"

            create_vhost(name)
            accepted = _poll_until_accepted(http, f"/integrations/{iid}/sync")
            assert http.get("/readyz").status_code == 200
            message_ids = [m["message_id"] for m in queued(url, "sync", SYNC_INTEGRATION, iid)]
            assert message_ids == [accepted.json()["message_id"]]
            assert 'integrations_api_publish_failures_total{actor="sync_integration"}' in http.get("/metrics").text
    finally:
        rabbitmqctl("delete_vhost", name)
        close(c)


def test_a_broker_that_accepts_connections_but_never_answers_gives_503(pg_url: str, google) -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)  # the kernel completes TCP handshakes; nobody ever speaks AMQP
        url = f"amqp://guest:guest@127.0.0.1:{black_hole.getsockname()[1]}/%2F"
        app, c = build_app(make_settings(pg_url, google, broker_url=url), url, publish_timeout_seconds=2)
        user_id, key = create_user(c.sessions, new_email())
        iid = connect(c, user_id=user_id)
        try:
            with ApiServer(app) as server, httpx.Client(base_url=server.url, headers=bearer(key), timeout=10) as http:
                resp = http.post(f"/integrations/{iid}/sync")
                assert resp.status_code == 503
                assert resp.json()["error"]["code"] == "broker_unavailable"
        finally:
            close(c)


def _poll_until_accepted(http: httpx.Client, path: str, seconds: float = 20) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        resp = http.post(path)
        if resp.status_code == 202 or time.monotonic() > deadline:
            assert resp.status_code == 202, resp.text
            return resp
        time.sleep(0.2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_first_sync_the_broker_could_not_take_at_the_callback_is_sent_by_the_outbox_sweep(
    no_broker, api_vhost: str
) -> None:
    client, c = no_broker
    _, key = create_user(c.sessions, new_email())
    callback = client.get("/oauth/google/callback", params=consent(start(client, bearer(key))))
    assert callback.status_code == 200  # the done page, after the 303
    assert "could not be started" in callback.text
    with c.sessions() as s:
        row = s.scalars(select(Integration).order_by(Integration.id.desc())).first()
        assert row is not None and row.last_synced_at is None
        iid, connected_at = row.id, row.created_at

    broker = make_broker(api_vhost)
    try:
        queued(api_vhost, "sync", INTEGRATION_CONNECTED, iid)  # nothing from earlier tests
        # Within the grace minute nothing is owed yet; past it, the first sync is published.
        assert (INTEGRATION_CONNECTED, iid) not in outbox.sweep(c.sessions, broker, connected_at, 60)
        swept = outbox.sweep(c.sessions, broker, connected_at + dt.timedelta(seconds=61), 60)
        assert (INTEGRATION_CONNECTED, iid) in swept
        assert [m["args"] for m in queued(api_vhost, "sync", INTEGRATION_CONNECTED, iid)] == [[iid]]
        # Once it synced, nothing more is owed.
        with c.sessions.begin() as s:
            s.execute(update(Integration).where(Integration.id == iid).values(last_synced_at=utcnow()))
        later = connected_at + dt.timedelta(minutes=2, seconds=1)
        assert (INTEGRATION_CONNECTED, iid) not in outbox.sweep(c.sessions, broker, later, 60)
    finally:
        broker.close()


def test_metrics_include_the_apis_own_google_calls(api: Api) -> None:
    _, headers = api.user()
    api.connect(headers)  # the OAuth callback exchanges the code at Google's token endpoint, from the API
    text = api.client.get("/metrics").text
    assert 'integrations_google_requests_total{api="token",code="200"}' in text
