"""Bearer authentication: user API keys (hashed, constant-time) and the admin key."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from starlette.requests import Request

from common.users import authenticate
from services.api.errors import ApiError
from services.api.state import api_state

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_MAX_KEY_LENGTH = 512


@dataclass(frozen=True)
class Caller:
    """The authenticated user of a request."""

    user_id: int
    email: str


def bearer_key(request: Request) -> str | None:
    """The credential of an `Authorization: Bearer <key>` header, or None."""
    return parse_bearer(request.headers.get("authorization", ""))


def parse_bearer(header: str) -> str | None:
    """The credential of an `Authorization` header's value `Bearer <key>`, or None."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > _MAX_KEY_LENGTH:
        return None
    return value


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, _CHALLENGE)


async def require_user(request: Request) -> Caller:
    """The caller owning the request's API key; 401 when it is missing or unknown."""
    key = required_key(request)
    sessions = api_state(request).container.sessions

    def lookup() -> tuple[int, str] | None:
        with sessions() as s:
            user = authenticate(s, key)
            return None if user is None else (user.id, user.email)

    return caller_of(request, await anyio.to_thread.run_sync(lookup))


async def require_user_for_work(request: Request, check: Callable[[str], tuple[int, str] | None]) -> Caller:
    """`require_user`, with the key and the target checked by one call (in a worker thread): `check(key)`
    returns the key's (user id, email), or None for an invalid key, and raises when the target is not
    workable. A 401 still comes before anything about the target."""
    key = required_key(request)
    return caller_of(request, await anyio.to_thread.run_sync(check, key))


def required_key(request: Request) -> str:
    """The request's bearer key; 401 when there is none."""
    key = bearer_key(request)
    if key is None:
        raise unauthorized("Send your API key as 'Authorization: Bearer <key>'.")
    return key


def caller_of(request: Request, user: tuple[int, str] | None) -> Caller:
    """The caller for a key lookup's result (user id, email); 401 for None."""
    if user is None:
        raise unauthorized("The API key is not valid.")
    request.state.user_id = user[0]
    return Caller(*user)


def require_admin(request: Request) -> None:
    """Check the admin key in constant time; 503 when ADMIN_API_KEY is not configured."""
    expected = api_state(request).container.settings.admin_api_key.reveal()
    if not expected:
        raise ApiError(503, "admin_disabled", "The admin API is disabled: ADMIN_API_KEY is not set.")
    given = bearer_key(request) or ""
    # Compare digests so neither the length nor a prefix of the key leaks through timing.
    if not hmac.compare_digest(_digest(given), _digest(expected)) or not given:
        raise unauthorized("The admin key is not valid.")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
