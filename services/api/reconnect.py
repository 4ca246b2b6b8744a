"""`/integrations/{id}/reconnect?token=...`: the link in re-auth emails, and the page its button posts from.

No bearer key: the signed, single-use link is the credential, bound to one integration. GET (and HEAD)
only check the link and show a page naming the integration with one button: mail scanners and link
previews fetch links, and must not use them up. The button POSTs the token as a form field (a
cross-site page cannot, as it does not know the token); only then is the link marked used and, in the
same transaction, a 10-minute OAuth state bound to the integration's owner and to the integration
stored; the browser goes on to Google with the Google account preselected (the account's email appears
only in that redirect, never on the page). The callback (oauth_routes) then updates that same
integration, clears its error and closes the incident, which makes the notifier send the
"reconnected" confirmation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from common.bootstrap import Container
from common.logging import get_logger
from common.models import utcnow
from common.reconnect_links import (
    LinkNotNeeded,
    ReconnectLinkError,
    check_link,
    make_signer,
    public_name,
    reconnect_path,
    redeem_link,
)
from common.web_sessions import find_session, open_session, revoke_session, session_hash
from services.api.oauth_flow import add_state
from services.api.pages import form_page, page
from services.api.params import ID_PATTERN, MAX_ID
from services.api.web.session import cookie_name, from_this_site, set_session_cookie

log = get_logger("integrations.api.reconnect")

MAX_TOKEN_LENGTH = 2048
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_FORM = "application/x-www-form-urlencoded"
MSG_INCOMPLETE = "This reconnect link is incomplete. Open the link from the email again."
MSG_OTHER_SITE = "This form was sent from another site. Open the link from the email and press its button."


def container_of(request: Request) -> Container:
    """The container: the API's state (`app.state.api.container`), or `app.state.container` in a bare app."""
    api = getattr(request.app.state, "api", None)
    container = api.container if api is not None else request.app.state.container
    assert isinstance(container, Container)
    return container


def describe_link(c: Container, integration_id: int, token: str) -> str:
    """The name the link's page shows, when the link can be used; uses nothing. Raises ReconnectLinkError."""
    signer = make_signer(c.settings.token_encryption_keys.reveal())
    with c.sessions() as s:
        _, integration = check_link(s, signer, token, integration_id=integration_id, now=utcnow())
        return public_name(integration)


def start_reconnect(c: Container, integration_id: int, token: str, old_session: str = "") -> tuple[str, str]:
    """Redeem the link, sign the browser in as the integration's owner and store the OAuth state bound to that
    session, in one transaction; Google's authorization URL and the new session's raw id (for the cookie).

    The browser's previous session, if any, is revoked (no fixation). Raises ReconnectLinkError
    (LinkNotNeeded when the integration already works).
    """
    now = utcnow()
    signer = make_signer(c.settings.token_encryption_keys.reveal())
    with c.sessions.begin() as s:
        link = redeem_link(s, signer, token, integration_id=integration_id, now=now)
        old = find_session(s, old_session, now) if old_session else None
        if old is not None:
            revoke_session(s, old.session_hash, now)
        raw = open_session(s, user_id=link.user_id, operator=False, now=now)
        state, pkce = add_state(
            s, user_id=link.user_id, integration_id=link.integration_id, now=now, session_hash=session_hash(raw)
        )
    log.info("reconnect.link_used", integration_id=integration_id, incident_id=link.incident_id)
    url = c.oauth.authorization_url(
        redirect_uri=c.settings.redirect_uri, state=state, pkce=pkce, login_hint=link.google_email
    )
    return url, raw


async def reconnect(request: Request) -> Response:
    raw_id = request.path_params.get("integration_id", "")
    # Parsed here rather than by an `:int` route: any id that cannot exist is this page's 400, never a bare 404
    # (or, for thousands of digits, a 500 from int()).
    if not isinstance(raw_id, str) or not ID_PATTERN.fullmatch(raw_id) or int(raw_id) > MAX_ID:
        return _rejected("That is not a reconnect link.")
    integration_id = int(raw_id)
    c = container_of(request)
    post = request.method == "POST"  # GET and HEAD only look: mail scanners and link previews fetch links
    if post and not from_this_site(request):  # another site's form would sign this browser in as the link's owner
        return page("This reconnect link cannot be used", MSG_OTHER_SITE, 403)
    token = await _form_token(request) if post else request.query_params.get("token", "")
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return _rejected(MSG_INCOMPLETE)
    old_session = request.cookies.get(cookie_name(c.settings), "")
    try:
        if post:
            url, raw = await anyio.to_thread.run_sync(lambda: start_reconnect(c, integration_id, token, old_session))
        else:
            answer = await anyio.to_thread.run_sync(lambda: describe_link(c, integration_id, token))
    except LinkNotNeeded as exc:
        return page("Nothing to reconnect", exc.message, 200)
    except ReconnectLinkError as exc:
        log.info("reconnect.link_rejected", integration_id=integration_id, message=exc.message, used=post)
        return _rejected(exc.message)
    if post:
        # The browser is now signed in as the owner: the callback accepts this state only from this session.
        response = RedirectResponse(url, status_code=303, headers=_NO_STORE)
        set_session_cookie(response, raw, c.settings)
        return response
    return form_page(
        f"Reconnect {answer}",
        f"{answer} needs your permission again before it can sync. "
        "Press the button to sign in with Google and allow access; nothing changes until you do.",
        action=c.settings.public_base_url.rstrip("/") + reconnect_path(integration_id),
        fields={"token": token},
        button="Reconnect with Google",
    )


async def _form_token(request: Request) -> str:
    """The `token` field of a form-encoded body; empty when the body is anything else."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != _FORM:
        return ""
    raw = await request.body()  # BodyLimit caps its size
    try:
        fields = parse_qs(raw.decode("ascii"), max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):  # ValueError: more fields than a genuine form has
        return ""
    values = fields.get("token", [])
    return values[0] if len(values) == 1 else ""


def _rejected(message: str) -> Response:
    return page("This reconnect link cannot be used", message, 400)


routes: list[BaseRoute] = [Route("/integrations/{integration_id}/reconnect", reconnect, methods=["GET", "POST"])]

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
_PAGE = {"text/html": {"schema": {"type": "string"}}}

openapi_paths: dict[str, Any] = {
    "/integrations/{id}/reconnect": {
        "get": {
            "summary": "Open a reconnect link from a re-auth email: a page with one button (HEAD and GET never use it)",
            "security": [],
            "parameters": [
                _ID,
                {
                    "name": "token",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The signed, single-use link token (valid 7 days, bound to the integration).",
                },
            ],
            "responses": {
                "200": {
                    "description": "HTML: names the integration, with one form that POSTs the token here; "
                    "or says the integration already works.",
                    "content": _PAGE,
                },
                "400": {
                    "description": "HTML: the link is expired, altered, already used or for another integration.",
                    "content": _PAGE,
                },
            },
        },
        "post": {
            "summary": "The reconnect page's button: uses the link and goes on to Google's consent screen",
            "security": [],
            "parameters": [_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "required": ["token"],
                            "properties": {"token": {"type": "string", "description": "The link's token."}},
                        }
                    }
                },
            },
            "responses": {
                "303": {"description": "To Google's authorization URL; the callback then updates this integration."},
                "200": {"description": "HTML: the integration already works, nothing to do.", "content": _PAGE},
                "400": {
                    "description": "HTML: no token, or the link is expired, altered, already used or for another "
                    "integration.",
                    "content": _PAGE,
                },
            },
        },
    }
}
