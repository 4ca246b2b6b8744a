"""Connecting a Google account: start (authenticated), callback (the browser, bound by state), done page."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from common.logging import get_logger
from common.models import Integration
from common.signing import BadSignature
from common.tasks import INTEGRATION_CONNECTED
from services.api.auth import require_user
from services.api.connect_flow import start_connect_flow
from services.api.errors import bad_request
from services.api.oauth_flow import CallbackRejected, Outcome, finish_authorization
from services.api.pages import failure, page, wants_json
from services.api.publishing import PublishFailed
from services.api.rate_limit import limit_work
from services.api.state import api_state
from services.api.web.session import current_session, session_cookie

log = get_logger("integrations.api.oauth")

DONE_PATH = "/oauth/google/done"
DONE_TTL_SECONDS = 15 * 60
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
_RESULTS = {
    "connected": "is now connected",
    "updated": "was already connected; its access has been renewed",
    "reconnected": "is connected again",
}


async def connect(request: Request) -> Response:
    caller = await require_user(request)
    login_hint = await _login_hint(request)
    limit_work(request, caller.user_id)
    c = api_state(request).container
    url = await anyio.to_thread.run_sync(lambda: start_connect_flow(c, user_id=caller.user_id, login_hint=login_hint))
    return JSONResponse({"authorization_url": url}, headers={"Cache-Control": "no-store"})


async def _login_hint(request: Request) -> str | None:
    """An optional JSON body `{"login_hint": "someone@example.com"}` preselects the Google account."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's limit
        raise bad_request("The body must be empty or a JSON object.") from None
    if not isinstance(data, dict) or set(data) - {"login_hint"}:
        raise bad_request('The body may only hold {"login_hint": "<email>"}.')
    hint = data.get("login_hint")
    if hint is None:
        return None
    # isprintable() also refuses lone surrogates (which cannot be URL-encoded) and invisible format characters.
    if not isinstance(hint, str) or not _EMAIL.fullmatch(hint) or not hint.isprintable():
        raise bad_request("login_hint must be an email address.")
    return hint


async def callback(request: Request) -> Response:
    state = api_state(request)
    q = request.query_params
    cookie = session_cookie(request)

    def finish() -> Outcome:
        browser = current_session(state.container, cookie)
        return finish_authorization(
            state.container, state=q.get("state", ""), code=q.get("code"), error=q.get("error"), browser=browser
        )

    try:
        outcome = await anyio.to_thread.run_sync(finish)
    except CallbackRejected as exc:
        level = "error" if exc.code == "provider_config" else "info"
        getattr(log, level)("oauth.callback.rejected", reason=exc.code, status=exc.status)
        return failure(request, exc.status, exc.code, exc.message)
    done = outcome.connected
    request.state.user_id = outcome.user_id
    request.state.integration_id = done.integration_id
    queued = True
    try:
        await state.gateway.send(INTEGRATION_CONNECTED, done.integration_id)
        await state.gateway.publish_events(done.events)
    except PublishFailed:
        # The integration is stored; the scheduler's outbox sweep publishes its first sync in a minute or two.
        queued = False
    result = "reconnected" if done.reconnected else "connected" if done.created else "updated"
    log.info("oauth.connected", integration_id=done.integration_id, result=result, initial_sync_queued=queued)
    signed = state.done_signer.sign({"i": done.integration_id, "r": result, "q": queued}, DONE_TTL_SECONDS)
    base = state.container.settings.public_base_url.rstrip("/")
    return RedirectResponse(f"{base}{DONE_PATH}?{urlencode({'r': signed})}", status_code=303)


async def done_page(request: Request) -> Response:
    state = api_state(request)
    try:
        payload = state.done_signer.verify(request.query_params.get("r", ""))
        integration_id, result, queued = int(payload["i"]), str(payload["r"]), bool(payload["q"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return failure(request, 400, "invalid_link", "This page's link is invalid or has expired.")
    sessions = state.container.sessions

    def display_name() -> str | None:
        with sessions() as s:
            row = s.get(Integration, integration_id)
            return None if row is None else row.display_name

    name = await anyio.to_thread.run_sync(display_name)
    if name is None:
        return failure(request, 400, "invalid_link", "The integration this page names no longer exists.")
    first_sync = "queued" if queued else "not_queued"
    if wants_json(request):
        body = {"integration_id": integration_id, "display_name": name, "result": result, "first_sync": first_sync}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
    sync_note = (
        "Its first sync has started; your data will appear shortly."
        if queued
        else "Its first sync could not be started right now; it starts by itself within a few minutes."
    )
    return page(f"Connected: {name}", f"{name} {_RESULTS.get(result, 'is connected')}. {sync_note}")


routes: list[BaseRoute] = [
    Route("/integrations/google/connect", connect, methods=["POST"]),
    Route("/oauth/google/callback", callback, methods=["GET"]),
    Route(DONE_PATH, done_page, methods=["GET"]),
]
