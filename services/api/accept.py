"""The work endpoints' async accept (POST /integrations/{id}/sync and /refresh on PostgreSQL + RabbitMQ).

`accept` is the one implementation: the key + integration check, the per-key limit, the sync claim and the
confirmed publish. `AcceptRoute` runs it as a plain ASGI callable for `services.api.front.Front`, which sends
these two routes straight here (no Starlette Request, router or exception middleware on the hot path); the
Starlette handlers in `integrations_routes` call the same `accept` for anything that reaches them.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from common.tasks import REFRESH_INTEGRATION, SYNC_INTEGRATION, build_message
from services.api.async_accept import DatabaseBusy
from services.api.auth import parse_bearer, unauthorized
from services.api.errors import EXCEPTION_HANDLERS, ApiError
from services.api.params import MAX_ID
from services.api.publishing import PublishFailed
from services.api.rate_limit import limit_key
from services.api.state import ApiState

# "Refresh this one now": a window no token outlives, so the worker always calls Google (under the
# integration's lock, so a refresh that just happened elsewhere is reused rather than repeated).
FORCE_REFRESH_WITHIN_SECONDS = 10**9
# action -> (actor, extra arguments, coalesce)
WORK = {
    "sync": (SYNC_INTEGRATION, (), True),
    "refresh": (REFRESH_INTEGRATION, (FORCE_REFRESH_WITHIN_SECONDS,), False),
}
# The ids `params.integration_id` accepts; any other path takes the router (which answers 404 after the key).
_PATH = re.compile(r"/integrations/([1-9][0-9]{0,18})/(sync|refresh)")
_JSON = [(b"content-type", b"application/json")]


async def accept(state: ApiState, key: str, action: str, iid: int, request_state: MutableMapping[str, Any]) -> str:
    """Check `key` and integration `iid`, then queue `action` for it; the message id (a folded sync's: the one
    already queued). Raises what the API answers: ApiError (401, 429, 503), IntegrationNotFound,
    IntegrationInactive, PublishFailed."""
    check, publisher = state.work_check, state.publisher
    assert check is not None and publisher is not None
    actor, extra, coalesce = WORK[action]
    try:
        user = await check.check(key, iid)
        if user is None:
            raise unauthorized("The API key is not valid.")
        request_state["user_id"] = user[0]
        limit_key(state.limiter, user[0])
        message = build_message(actor, iid, *extra)
        if coalesce and (queued := await check.claim_sync(iid, message.message_id)) is not None:
            return queued  # folded into the sync already queued
    except DatabaseBusy:
        raise ApiError(
            503, "database_unavailable", "The database is unavailable; try again shortly.", {"Retry-After": "1"}
        ) from None
    try:
        await publisher.send(message)
    except PublishFailed:
        state.metrics.publish_failed(actor)
        if coalesce:
            with contextlib.suppress(DatabaseBusy):  # else the claim goes stale by itself (sync_requests.STALE)
                await check.release_sync(iid, message.message_id)
        raise
    return message.message_id


class AcceptRoute:
    """POST /integrations/{id}/sync|refresh as a plain ASGI callable; `match` says whether a request is one."""

    def __init__(self, state: ApiState) -> None:
        self.state = state

    @staticmethod
    def match(scope: Scope) -> tuple[int, str] | None:
        """(integration id, action) when `scope` is a work request this route answers, else None."""
        if scope["method"] != "POST":
            return None
        found = _PATH.fullmatch(scope["path"])
        if found is None or int(found[1]) > MAX_ID:
            return None
        return int(found[1]), found[2]

    async def __call__(self, scope: Scope, receive: Receive, send: Send, iid: int, action: str) -> None:
        request_state = scope.setdefault("state", {})
        request_state["integration_id"] = iid
        try:
            with self.state.in_flight.slot():
                key = _bearer(scope)
                if key is None:
                    raise unauthorized("Send your API key as 'Authorization: Bearer <key>'.")
                message_id = await accept(self.state, key, action, iid, request_state)
        except Exception as exc:
            await _handled(exc, scope, receive, send)
            return
        body = json.dumps({"integration_id": iid, "message_id": message_id}, separators=(",", ":")).encode()
        headers = [(b"content-length", str(len(body)).encode()), *_JSON]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return parse_bearer(value.decode("latin-1"))
    return None


async def _handled(exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    """The answer the app's exception handlers give for `exc` (as Starlette looks them up: by the class's MRO)."""
    handler = next(EXCEPTION_HANDLERS[cls] for cls in type(exc).__mro__ if cls in EXCEPTION_HANDLERS)
    response = await handler(Request(scope, receive), exc)
    await response(scope, receive, send)
