"""Google-shaped error bodies for the OAuth endpoints and the Business Profile APIs."""

from __future__ import annotations

from typing import Any

REVOKED: dict[str, Any] = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
INVALID_RAPT: dict[str, Any] = {
    "error": "invalid_grant",
    "error_description": "reauth related error (invalid_rapt)",
    "error_uri": "https://support.google.com/a/answer/9368756",
    "error_subtype": "invalid_rapt",
}

_API_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other"
        " valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    ),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests' of service 'mybusiness'."),
    500: ("INTERNAL", "Internal error encountered."),
    502: ("UNAVAILABLE", "The service is currently unavailable."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request timed out."),
}


def invalid_request(description: str) -> dict[str, Any]:
    """OAuth `invalid_request` body."""
    return {"error": "invalid_request", "error_description": description}


def invalid_grant(description: str) -> dict[str, Any]:
    """OAuth `invalid_grant` body."""
    return {"error": "invalid_grant", "error_description": description}


def api_error(code: int, message: str | None = None) -> tuple[int, dict[str, Any]]:
    """A Business Profile API error reply: (status, {"error": {code, message, status}})."""
    status, default = _API_STATUS.get(code, ("UNKNOWN" if code < 500 else "INTERNAL", "Error."))
    return code, {"error": {"code": code, "message": message or default, "status": status}}


def oauth_fault(code: int) -> dict[str, Any]:
    """The body of an injected failure on the token or revoke endpoint."""
    if code == 429:
        return {"error": "rate_limit_exceeded", "error_description": "Rate limit exceeded."}
    if code >= 500:
        return {"error": "internal_failure", "error_description": "Backend Error"}
    if code == 401:
        return {"error": "invalid_client", "error_description": "The OAuth client was not found."}
    return invalid_request("Bad Request")


UNAUTHENTICATED = api_error(401)
INSUFFICIENT_SCOPES = api_error(403, "Request had insufficient authentication scopes.")
PERMISSION_DENIED = api_error(403)
