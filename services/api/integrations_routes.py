"""The caller's integrations: list, show, sync, refresh, disconnect, insights."""

from __future__ import annotations

import datetime as dt

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from common import sync_requests
from common.tasks import new_message_id
from services.api import params, queries
from services.api.accept import WORK, accept
from services.api.auth import require_user, require_user_for_work, required_key
from services.api.disconnect import disconnect
from services.api.errors import ApiError
from services.api.insights import next_link, page_request, render_page
from services.api.publishing import PublishFailed
from services.api.rate_limit import limit_work
from services.api.state import api_state


async def list_integrations(request: Request) -> Response:
    caller = await require_user(request)
    sessions = api_state(request).container.sessions
    return JSONResponse(await anyio.to_thread.run_sync(queries.list_integrations, sessions, caller.user_id))


async def get_integration(request: Request) -> Response:
    caller = await require_user(request)
    iid = params.integration_id(request)
    sessions = api_state(request).container.sessions
    return JSONResponse(await anyio.to_thread.run_sync(queries.get_integration, sessions, caller.user_id, iid))


async def integration(request: Request) -> Response:
    if request.method == "DELETE":
        return await delete_integration(request)
    return await get_integration(request)


async def sync(request: Request) -> Response:
    return await _enqueue(request, "sync")


async def refresh(request: Request) -> Response:
    return await _enqueue(request, "refresh")


async def _enqueue(request: Request, action: str) -> Response:
    try:
        iid = params.integration_id(request)
    except ApiError:
        await require_user(request)  # a bad key is a 401 whatever the path says
        raise
    state = api_state(request)
    with state.in_flight.slot():
        if state.work_check is not None and state.publisher is not None:
            message_id = await accept(state, required_key(request), action, iid, request.scope.setdefault("state", {}))
        else:
            message_id = await _enqueue_threads(request, action, iid)
    return JSONResponse({"integration_id": iid, "message_id": message_id}, status_code=202)


async def _enqueue_threads(request: Request, action: str, iid: int) -> str:
    """The thread path (SQLite, the in-process broker): the same checks, claim and publish, each in a thread."""
    actor, extra, coalesce = WORK[action]
    state = api_state(request)
    sessions = state.container.sessions
    caller = await require_user_for_work(request, lambda key: queries.authorize_work(sessions, key, iid))
    limit_work(request, caller.user_id)
    if not coalesce:
        return await state.gateway.send(actor, iid, *extra)
    # A sync already queued for it answers for this request too (common/sync_requests.py).
    message_id = new_message_id()
    queued = await anyio.to_thread.run_sync(sync_requests.claim, sessions, iid, message_id)
    if queued is not None:
        return queued
    try:
        await state.gateway.send(actor, iid, *extra, message_id=message_id)
    except PublishFailed:
        await anyio.to_thread.run_sync(sync_requests.release, sessions, iid, message_id)
        raise
    return message_id


async def delete_integration(request: Request) -> Response:
    caller = await require_user(request)
    iid = params.integration_id(request)
    c = api_state(request).container
    await anyio.to_thread.run_sync(disconnect, c, caller.user_id, iid)
    return Response(status_code=204)


async def insights(request: Request) -> Response:
    caller = await require_user(request)
    iid = params.integration_id(request)
    start, end = params.date_range(request, dt.datetime.now(dt.UTC).date())
    page = page_request(request, start, end)
    c = api_state(request).container
    body, cursor = await anyio.to_thread.run_sync(render_page, c.sessions, caller.user_id, iid, page)
    headers = {} if cursor is None else {"Link": next_link(c.settings.public_base_url, request.url.path, page, cursor)}
    return Response(body, media_type="application/json", headers=headers)


routes: list[BaseRoute] = [
    Route("/integrations", list_integrations, methods=["GET"]),
    Route("/integrations/{id}", integration, methods=["GET", "DELETE"]),
    Route("/integrations/{id}/sync", sync, methods=["POST"]),
    Route("/integrations/{id}/refresh", refresh, methods=["POST"]),
    Route("/integrations/{id}/insights", insights, methods=["GET"]),
]
