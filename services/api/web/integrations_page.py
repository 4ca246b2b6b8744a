"""The Integrations page (`GET /`) and its actions: connect, sync now, reconnect, disconnect; a JSON status feed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from common.errors import IntegrationInactive, IntegrationNotFound
from common.tasks import SYNC_INTEGRATION
from common.web_sessions import SignedIn
from services.api.disconnect import disconnect
from services.api.oauth_flow import start_authorization
from services.api.params import ID_PATTERN, MAX_ID
from services.api.publishing import PublishFailed
from services.api.state import api_state
from services.api.web import queries
from services.api.web.session import csrf_ok, from_this_site, signed_in
from services.api.web.templating import page_headers, render, when

NOTICES = {
    "sync": "Sync started. The status below updates when it finishes.",
    "disconnected": "Disconnected. We stopped syncing it and deleted our access to the Google account.",
    "busy": "We could not start that right now. Try again in a minute.",
}
CSRF_TEXT = "This form was out of date or did not come from this site. Reload the page and try again."


async def home(request: Request) -> Response:
    """The signed-in person's integrations, or the sign-in form."""
    session = await signed_in(request)
    if session is None or session.user_id is None:
        return render(request, "sign_in.html")
    sessions = api_state(request).container.sessions
    email, cards = await anyio.to_thread.run_sync(queries.cards, sessions, session.user_id)
    notice = NOTICES.get(request.query_params.get("notice", ""), "")
    return render(
        request, "integrations.html", session=session, csrf=session.csrf_token, who=email, cards=cards, notice=notice
    )


async def status_feed(request: Request) -> Response:
    """What the page's script polls while something is syncing: each integration's status and last sync."""
    session = await signed_in(request)
    settings = api_state(request).container.settings
    if session is None or session.user_id is None:
        return JSONResponse({"error": "signed_out"}, 401, headers=page_headers(settings))
    _, cards = await anyio.to_thread.run_sync(queries.cards, api_state(request).container.sessions, session.user_id)
    body = [
        {
            "id": c.id,
            "status": c.status.key,
            "label": c.status.label,
            "detail": c.status.detail,
            "last_synced": when(c.last_synced_at),
        }
        for c in cards
    ]
    return JSONResponse({"integrations": body}, headers=page_headers(settings))


Action = Callable[[Request, SignedIn, int], Awaitable[Response]]


def form_action(action: Action, *, needs_id: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """A POST from the page: signed in, a valid CSRF token, the person's own integration (404 otherwise)."""

    async def endpoint(request: Request) -> Response:
        session = await signed_in(request)
        form = await request.form()
        if session is None or session.user_id is None:
            return RedirectResponse("/", status_code=303)
        if not from_this_site(request) or not csrf_ok(session, form.get("csrf")):
            return render(request, "message.html", 403, heading="Please try again", text=CSRF_TEXT)
        iid = path_id(request) if needs_id else 0
        if iid is None:
            return not_found(request)
        try:
            return await action(request, session, iid)
        except IntegrationNotFound:
            return not_found(request)
        except IntegrationInactive as exc:
            return render(request, "message.html", 409, heading="Not possible right now", text=str(exc))

    return endpoint


def path_id(request: Request) -> int | None:
    """The `{id}` of the path, or None when no integration could have it."""
    raw = str(request.path_params.get("id", ""))
    return int(raw) if ID_PATTERN.fullmatch(raw) and int(raw) <= MAX_ID else None


async def page_target(request: Request) -> tuple[SignedIn, int, int] | Response:
    """(session, user id, integration id) for a page about one integration; the answer to give otherwise."""
    session = await signed_in(request)
    if session is None or session.user_id is None:
        return RedirectResponse("/", status_code=303)
    iid = path_id(request)
    return not_found(request) if iid is None else (session, session.user_id, iid)


def not_found(request: Request) -> Response:
    return render(request, "message.html", 404, heading="Not found", text="There is no such integration.")


def _user(session: SignedIn) -> int:
    assert session.user_id is not None
    return session.user_id


async def sync_now(request: Request, session: SignedIn, iid: int) -> Response:
    state = api_state(request)
    await anyio.to_thread.run_sync(queries.request_sync, state.container.sessions, _user(session), iid)
    try:
        await state.gateway.send(SYNC_INTEGRATION, iid)
    except PublishFailed:
        return RedirectResponse("/?notice=busy", status_code=303)
    return RedirectResponse("/?notice=sync", status_code=303)


async def connect(request: Request, session: SignedIn, _iid: int) -> Response:
    c = api_state(request).container
    url = await anyio.to_thread.run_sync(
        lambda: start_authorization(c, user_id=_user(session), session_hash=session.session_hash)
    )
    return RedirectResponse(url, status_code=303)


async def reconnect(request: Request, session: SignedIn, iid: int) -> Response:
    """One click into the OAuth flow for this integration, with its Google account preselected."""
    c = api_state(request).container

    def start() -> str:
        hint = queries.reconnect_target(c.sessions, _user(session), iid)
        return start_authorization(
            c, user_id=_user(session), integration_id=iid, login_hint=hint, session_hash=session.session_hash
        )

    return RedirectResponse(await anyio.to_thread.run_sync(start), status_code=303)


async def disconnect_now(request: Request, session: SignedIn, iid: int) -> Response:
    c = api_state(request).container
    await anyio.to_thread.run_sync(disconnect, c, _user(session), iid)
    return RedirectResponse("/?notice=disconnected", status_code=303)


async def confirm_disconnect(request: Request) -> Response:
    """The confirmation page (the page works without script, so no `confirm()` dialog)."""
    target = await page_target(request)
    if isinstance(target, Response):
        return target
    session, user_id, iid = target
    try:
        card = await anyio.to_thread.run_sync(queries.card, api_state(request).container.sessions, user_id, iid)
    except IntegrationNotFound:
        return not_found(request)
    return render(request, "disconnect.html", session=session, csrf=session.csrf_token, card=card)


def _both(get: Callable[[Request], Awaitable[Response]], post: Callable[[Request], Awaitable[Response]]) -> Any:
    async def endpoint(request: Request) -> Response:
        return await (post if request.method == "POST" else get)(request)

    return endpoint


routes: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/web/status", status_feed, methods=["GET"]),
    Route("/web/connect", form_action(connect, needs_id=False), methods=["POST"]),
    Route("/web/integrations/{id}/sync", form_action(sync_now), methods=["POST"]),
    Route("/web/integrations/{id}/reconnect", form_action(reconnect), methods=["POST"]),
    Route(
        "/web/integrations/{id}/disconnect",
        _both(confirm_disconnect, form_action(disconnect_now)),
        methods=["GET", "POST"],
    ),
]
