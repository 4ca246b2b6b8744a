"""`GET /integrations/{id}/reconnect?token=...`: the one-click link in re-auth emails.

No bearer key: the signed, single-use link is the credential, bound to one integration. A good link
is marked used and, in the same transaction, a 10-minute OAuth state bound to the integration's owner
and to the integration is stored; the browser goes to Google with the Google account preselected. The
callback (oauth_routes) then updates that same integration, clears its error and closes the incident,
which makes the notifier send the "reconnected" confirmation.
"""

from __future__ import annotations

import secrets
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from common.bootstrap import Container
from common.google_oauth import Pkce
from common.logging import get_logger
from common.models import OAuthState, utcnow
from common.reconnect_links import LinkNotNeeded, ReconnectLinkError, make_signer, redeem_link
from services.api.oauth_flow import STATE_TTL, state_hash
from services.api.pages import page
from services.api.params import ID_PATTERN, MAX_ID

log = get_logger("integrations.api.reconnect")

MAX_TOKEN_LENGTH = 2048
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def container_of(request: Request) -> Container:
    """The container: the API's state (`app.state.api.container`), or `app.state.container` in a bare app."""
    api = getattr(request.app.state, "api", None)
    container = api.container if api is not None else request.app.state.container
    assert isinstance(container, Container)
    return container


def start_reconnect(c: Container, integration_id: int, token: str) -> str:
    """Redeem the link and store the OAuth state in one transaction; Google's authorization URL.

    Raises ReconnectLinkError (LinkNotNeeded when the integration already works).
    """
    now = utcnow()
    signer = make_signer(c.settings.token_encryption_keys.reveal())
    state, pkce = secrets.token_urlsafe(32), Pkce.new()
    with c.sessions.begin() as s:
        link = redeem_link(s, signer, token, integration_id=integration_id, now=now)
        s.add(
            OAuthState(
                state_hash=state_hash(state),
                user_id=link.user_id,
                integration_id=link.integration_id,
                code_verifier=pkce.verifier,
                created_at=now,
                expires_at=now + STATE_TTL,
            )
        )
    log.info("reconnect.link_used", integration_id=integration_id, incident_id=link.incident_id)
    return c.oauth.authorization_url(
        redirect_uri=c.settings.redirect_uri, state=state, pkce=pkce, login_hint=link.google_email
    )


async def reconnect(request: Request) -> Response:
    raw_id = request.path_params.get("integration_id", "")
    # Parsed here rather than by an `:int` route: any id that cannot exist is this page's 400, never a bare 404
    # (or, for thousands of digits, a 500 from int()).
    if not isinstance(raw_id, str) or not ID_PATTERN.fullmatch(raw_id) or int(raw_id) > MAX_ID:
        return _rejected("That is not a reconnect link.")
    integration_id = int(raw_id)
    token = request.query_params.get("token", "")
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return _rejected("This reconnect link is incomplete. Open the link from the email again.")
    c = container_of(request)
    try:
        url = await anyio.to_thread.run_sync(lambda: start_reconnect(c, integration_id, token))
    except LinkNotNeeded as exc:
        return page("Nothing to reconnect", exc.message, 200)
    except ReconnectLinkError as exc:
        log.info("reconnect.link_rejected", integration_id=integration_id, message=exc.message)
        return _rejected(exc.message)
    return RedirectResponse(url, status_code=302, headers=_NO_STORE)


def _rejected(message: str) -> Response:
    return page("This reconnect link cannot be used", message, 400)


routes: list[BaseRoute] = [Route("/integrations/{integration_id}/reconnect", reconnect, methods=["GET"])]

openapi_paths: dict[str, Any] = {
    "/integrations/{id}/reconnect": {
        "get": {
            "summary": "Follow a reconnect link from a re-auth email (opens Google's consent screen)",
            "security": [],
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                {
                    "name": "token",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The signed, single-use link token (valid 7 days, bound to the integration).",
                },
            ],
            "responses": {
                "302": {"description": "To Google's authorization URL; the callback then updates this integration."},
                "200": {"description": "HTML: the integration already works, nothing to do."},
                "400": {"description": "HTML: the link is expired, altered, already used or for another integration."},
            },
        }
    }
}
