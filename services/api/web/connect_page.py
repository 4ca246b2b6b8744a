"""`GET /connect/google?flow=...`: where the JSON API's authorization_url leads (see services.api.connect_flow)."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from common.logging import get_logger
from services.api.connect_flow import FLOW_PATH, Waiting, open_connect_flow
from services.api.state import api_state
from services.api.web.session import current_session, session_cookie
from services.api.web.templating import render

log = get_logger("integrations.api.web.connect")


async def connect_flow_page(request: Request) -> Response:
    """302 to Google for the flow's own signed-in browser; anyone else gets the sign-in page."""
    c = api_state(request).container
    token, cookie = request.query_params.get("flow", ""), session_cookie(request)

    def go() -> str | Waiting | None:
        return open_connect_flow(c, token, current_session(c, cookie))

    outcome = await anyio.to_thread.run_sync(go)
    if outcome is None:
        return render(
            request,
            "message.html",
            400,
            heading="This connection link cannot be used",
            text="It is invalid, has expired (links last 10 minutes) or was already used. Start the connection again.",
        )
    if isinstance(outcome, Waiting):
        log.info("connect.flow_waiting_for_sign_in")
        next_path = f"{FLOW_PATH}?flow={token}"
        return render(request, "sign_in.html", waiting=outcome, next_path=next_path)
    return RedirectResponse(outcome, status_code=302, headers={"Cache-Control": "no-store"})


routes: list[BaseRoute] = [Route(FLOW_PATH, connect_flow_page, methods=["GET"])]
