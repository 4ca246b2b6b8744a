"""The work endpoints' async path: a Dramatiq worker consumes what it publishes, and it sheds load."""

from __future__ import annotations

import socket
import threading

import httpx
from sqlalchemy import update
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from common.models import Integration
from common.tasks import SYNC_INTEGRATION
from common.users import create_user
from services.api.state import ApiState
from tests.conftest import make_settings
from tests.support.api import ApiServer, bearer, build_app, close
from tests.support.flows import connect, new_email
from tests.support.polling import wait_for
from tests.support.worker import running_worker

pytest_plugins = ["tests.support.api"]


def test_a_sync_accepted_on_the_async_path_is_run_by_a_dramatiq_worker(pg_url: str, amqp_url: str, google) -> None:
    settings = make_settings(pg_url, google, broker_url=amqp_url)
    with running_worker(settings, threads=2) as w:  # declares the queues first, as Dramatiq does
        app, c = build_app(settings, amqp_url)
        state: ApiState = app.state.api
        assert state.publisher is not None and state.work_check is not None, "PostgreSQL + RabbitMQ: async path"
        user_id, key = create_user(c.sessions, new_email())
        iid = connect(c, user_id=user_id, google_email=new_email("g"))
        try:
            with ApiServer(app) as server, httpx.Client(base_url=server.url, headers=bearer(key), timeout=10) as http:
                accepted = [http.post(f"/integrations/{iid}/sync") for _ in range(3)]
            assert [r.status_code for r in accepted] == [202, 202, 202], [r.text for r in accepted]
            ids = {r.json()["message_id"] for r in accepted}
            done = wait_for(lambda: ids <= {p.message_id for p in w.recorder.finished(SYNC_INTEGRATION, ok=True)})
            assert done
        finally:
            close(c)


def test_past_the_in_flight_bound_a_work_request_gets_503_with_retry_after_at_once(pg_url: str, google) -> None:
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)  # TCP handshakes complete; nobody speaks AMQP, so a publish stays in flight
        url = f"amqp://guest:guest@127.0.0.1:{black_hole.getsockname()[1]}/%2F"
        settings = make_settings(pg_url, google, broker_url=url, api_max_in_flight=1)
        app, c = build_app(settings, url, publish_timeout_seconds=4)
        user_id, key = create_user(c.sessions, new_email())
        iid = connect(c, user_id=user_id)
        stuck: list[httpx.Response] = []
        try:
            with ApiServer(app) as server, httpx.Client(base_url=server.url, headers=bearer(key), timeout=10) as http:
                first = threading.Thread(target=lambda: stuck.append(http.post(f"/integrations/{iid}/sync")))
                first.start()
                state: ApiState = app.state.api
                wait_for(lambda: state.in_flight.current == 1, what="the first request in flight")
                shed = http.post(f"/integrations/{iid}/sync")
                first.join()
            assert shed.status_code == 503 and shed.json()["error"]["code"] == "overloaded", shed.text
            assert shed.headers["Retry-After"] == "1"
            assert stuck[0].json()["error"]["code"] == "broker_unavailable"
            assert state.in_flight.current == 0 and state.in_flight.shed == 1
        finally:
            close(c)


def test_the_work_routes_answer_alike_from_the_front_layer_and_from_the_router(
    pg_url: str, google, api_vhost: str
) -> None:
    """`Front` answers POST /integrations/{id}/sync|refresh itself; the Starlette routes (the same `accept`)
    stay for anything else. Both give the same statuses, bodies, headers, request lines and metrics."""
    settings = make_settings(pg_url, google, broker_url=api_vhost)
    fast, c = build_app(settings, api_vhost)
    routed, c2 = build_app(settings, api_vhost)
    assert fast.front_options["accept"] is not None, "PostgreSQL + RabbitMQ: the front layer answers"  # type: ignore[attr-defined]
    routed.front_options["accept"] = None  # type: ignore[attr-defined]
    user_id, key = create_user(c.sessions, new_email())
    other_id, _ = create_user(c.sessions, new_email())
    iid, theirs = connect(c, user_id=user_id), connect(c, user_id=other_id)
    stuck = connect(c, user_id=user_id)
    with c.sessions.begin() as s:
        s.execute(update(Integration).where(Integration.id == stuck).values(needs_reauth=True))
    cases: list[tuple[str, dict[str, str], bytes]] = [
        (f"/integrations/{iid}/refresh", {}, b""),
        (f"/integrations/{iid}/refresh", bearer("ik_not-a-key"), b""),
        (f"/integrations/{theirs}/sync", bearer(key), b""),
        ("/integrations/9223372036854775807/refresh", bearer(key), b""),
        (f"/integrations/{stuck}/refresh", bearer(key), b""),
        (f"/integrations/{iid}/refresh", bearer(key), b"x" * (64 * 1024 + 1)),
        (f"/integrations/{iid}/refresh", bearer(key), b""),
    ]
    answers: dict[str, list[tuple[int, object, list[str]]]] = {}
    lines: dict[str, list[tuple[object, ...]]] = {}
    try:
        for name, app in (("front", fast), ("router", routed)):
            with TestClient(app) as client, capture_logs() as logs:
                responses = [client.post(path, headers=headers, content=body) for path, headers, body in cases]
                metrics = client.get("/metrics").text
            answers[name] = [
                (r.status_code, _without_message_id(r.json()), sorted(set(r.headers) - {"date"})) for r in responses
            ]
            lines[name] = [
                tuple(e[k] for k in ("method", "route", "status", "user_id", "integration_id"))
                for e in logs
                if e["event"] == "http.request" and e["route"] != "/metrics"
            ]
            assert 'route="/integrations/{id}/refresh",status="202"} 1.0' in metrics
        assert [a[0] for a in answers["front"]] == [401, 401, 404, 404, 409, 413, 202]
        assert answers["front"] == answers["router"]
        assert lines["front"] == lines["router"]
    finally:
        close(c)
        close(c2)


def _without_message_id(body: object) -> object:
    return {**body, "message_id": "..."} if isinstance(body, dict) and "message_id" in body else body
