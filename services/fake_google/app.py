"""The fake's Starlette application: OAuth endpoints, Business Profile APIs and the control routes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from services.fake_google import errors, gbp
from services.fake_google.control import control_routes
from services.fake_google.faults import Fault
from services.fake_google.state import FakeGoogle, Reply

_JSON = "application/json; charset=utf-8"
_PERFORMANCE_METHOD = "fetchMultiDailyMetricsTimeSeries"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response (cheaper than JSONResponse's defaults on the hot path)."""
    return Response(json.dumps(body, separators=(",", ":")), status, headers, _JSON)


def _fault_response(fault: Fault, oauth: bool) -> Response:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    if fault.body is not None:
        media = _JSON if fault.body.lstrip()[:1] in ("{", "[") else "text/html; charset=utf-8"
        return Response(fault.body, fault.status, headers, media)
    if oauth:
        return json_response(fault.status, errors.oauth_fault(fault.status), headers)
    status, body = errors.api_error(fault.status)
    return json_response(status, body, headers)


async def _gate(fake: FakeGoogle, endpoint: str) -> Fault | None:
    delay, fault = fake.begin(endpoint)
    if delay > 0:
        await asyncio.sleep(delay)
    return fault


def _parse_form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)) if body else {}


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        return "", ""
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


def create_app(fake: FakeGoogle) -> Starlette:
    """The fake Google HTTP application serving `fake`."""

    async def authorize(request: Request) -> Response:
        fault = await _gate(fake, "auth")
        if fault is not None:
            return _fault_response(fault, oauth=True)
        status, result = fake.authorize(request.query_params)
        if isinstance(result, str):
            return RedirectResponse(result, status_code=status)
        return json_response(status, result)

    async def revoke(request: Request) -> Response:
        form = _parse_form(await request.body())
        fault = await _gate(fake, "revoke")
        if fault is not None:
            return _fault_response(fault, oauth=True)
        status, body = fake.revoke(form.get("token") or request.query_params.get("token"))
        return json_response(status, body)

    def api(endpoint: str, handler: Callable[[Request, str], Reply]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint_fn(request: Request) -> Response:
            fault = await _gate(fake, endpoint)
            if fault is not None:
                return _fault_response(fault, oauth=False)
            user, error = fake.api_user(request.headers.get("authorization"))
            if user is None:
                status, body = error or errors.UNAUTHENTICATED
                return json_response(status, body, _BEARER_CHALLENGE if status == 401 else None)
            status, body = handler(request, user)
            return json_response(status, body)

        return endpoint_fn

    def list_accounts(request: Request, user: str) -> Reply:
        return gbp.accounts(fake, user, request.query_params)

    def list_locations(request: Request, user: str) -> Reply:
        return gbp.locations(fake, user, request.path_params["account_id"], request.query_params)

    def fetch_metrics(request: Request, user: str) -> Reply:
        location_id, _, method = request.path_params["target"].partition(":")
        if method != _PERFORMANCE_METHOD:
            return errors.api_error(404, f"Method not found: {method or '(none)'}.")
        return gbp.performance(fake, user, location_id, request.query_params)

    routes: list[BaseRoute] = [
        Route("/o/oauth2/v2/auth", authorize, methods=["GET"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/accountmanagement/v1/accounts", api("accounts", list_accounts), methods=["GET"]),
        Route(
            "/businessinformation/v1/accounts/{account_id}/locations",
            api("locations", list_locations),
            methods=["GET"],
        ),
        # "{target}" captures "123:fetchMultiDailyMetricsTimeSeries": a literal ":" in the pattern is fragile.
        Route("/performance/v1/locations/{target}", api("performance", fetch_metrics), methods=["GET"]),
        *control_routes(fake),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_TokenEndpoint, fake=fake)])


async def token_response(fake: FakeGoogle, body: bytes, authorization: str | None) -> Response:
    """Answer one POST /token."""
    form = _parse_form(body)
    generation = fake.generation
    fault = await _gate(fake, "token")
    if fake.generation != generation:
        return json_response(503, {"error": "temporarily_unavailable", "error_description": "reset"}, _NO_STORE)
    if fault is not None:
        fake.note_refresh(form)
        return _fault_response(fault, oauth=True)
    status, reply = fake.token(form, _basic_auth(authorization))
    return json_response(status, reply, _NO_STORE)


class _TokenEndpoint:
    # POST /token is the benchmarks' hot path: answering it here skips Starlette's routing and Request objects.
    def __init__(self, app: ASGIApp, fake: FakeGoogle) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/token":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await json_response(405, {"error": "invalid_request"}, {"Allow": "POST"})(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        response = await token_response(self.fake, b"".join(chunks), authorization)
        await response(scope, receive, send)


_NO_STORE = {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"}
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}
