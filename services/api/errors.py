"""Every error the API answers is JSON `{"error": {"code", "message"}}`; domain errors map to status codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from common.errors import IntegrationInactive, IntegrationNotFound, LockTimeout
from common.logging import get_logger
from services.api.publishing import PublishFailed

log = get_logger("integrations.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An answer other than success, raised from a handler and rendered as the JSON error body."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def not_found(what: str = "integration") -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(error_body(code, message), status, headers=dict(headers or {}))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, exc.headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    # Domain messages name ids; the answer stays the same whether the row is missing or someone else's.
    return error_response(404, "not_found", "No such integration.")


async def _inactive(request: Request, exc: Exception) -> Response:
    return error_response(409, "conflict", str(exc))


async def _publish_failed(request: Request, exc: Exception) -> Response:
    return error_response(
        503, "broker_unavailable", f"The request could not be queued: {exc}. Try again shortly.", {"Retry-After": "5"}
    )


async def _lock_timeout(request: Request, exc: Exception) -> Response:
    return error_response(503, "busy", "The integration is busy; try again shortly.", {"Retry-After": "5"})


async def _database(request: Request, exc: Exception) -> Response:
    log.error("database.unavailable", error=type(exc).__name__)
    return error_response(503, "database_unavailable", "The database is unavailable; try again shortly.")


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("http.unhandled_error", error=type(exc).__name__, exc_info=exc)
    return error_response(500, "internal_error", "An unexpected error occurred.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    IntegrationNotFound: _not_found,
    IntegrationInactive: _inactive,
    PublishFailed: _publish_failed,
    LockTimeout: _lock_timeout,
    OperationalError: _database,
    InterfaceError: _database,
    PoolTimeout: _database,
    Exception: _unexpected,
}
