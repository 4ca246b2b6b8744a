"""The OpenAPI operations of every endpoint: parameters and each status code it can answer."""

from __future__ import annotations

from typing import Any

from services.api.insights import DEFAULT_LIMIT as DEFAULT_INSIGHTS_LIMIT
from services.api.insights import MAX_LIMIT as MAX_INSIGHTS_LIMIT
from services.api.params import MAX_ID
from services.api.schemas import ref

JSON = "application/json"
_ERROR_REF = ref("Error")


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ERROR_REF}}}
    if headers:
        out["headers"] = headers
    return out


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _html_or_json(description: str, json_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"text/html": {"schema": {"type": "string"}}, JSON: {"schema": json_schema}},
    }


_CHALLENGE = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
_RETRY = {"Retry-After": {"schema": {"type": "string"}}}
UNAUTHORIZED = _error("Missing or invalid API key.", _CHALLENGE)
NOT_FOUND = _error("No such integration (or it belongs to another user; ids that cannot exist included).")
UNAVAILABLE = _error("The database or the message broker is unavailable; retry later.", _RETRY)
TOO_LARGE = _error("The request body exceeds 64 KiB.")
RATE_LIMITED = _error(
    "This API key sent more sync, refresh and connect requests than API_RATE_LIMIT_PER_MINUTE allows "
    "(default 60 a minute, bursts of API_RATE_LIMIT_BURST=10); retry after Retry-After seconds.",
    _RETRY,
)
ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID},
}
_ACCEPTED = ref("Accepted")
_PUBLIC: list[dict[str, list[str]]] = []


def _enqueue(summary: str, description: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": description,
        "parameters": [ID_PARAM],
        "responses": {
            "202": _ok("Queued.", _ACCEPTED),
            "401": UNAUTHORIZED,
            "404": NOT_FOUND,
            "409": _error("The integration is disconnected or needs re-authentication."),
            "413": TOO_LARGE,
            "429": RATE_LIMITED,
            "503": UNAVAILABLE,
        },
    }


PATHS: dict[str, Any] = {
    "/integrations/google/connect": {
        "post": {
            "summary": "Start connecting a Google Business Profile account",
            "description": "Returns a first-party URL under PUBLIC_BASE_URL for a single-use flow bound to the "
            "caller, valid for 10 minutes. Opened in a browser signed in as the caller it redirects to Google's "
            "consent page (offline access, prompt=consent, PKCE S256, a state bound to that browser session); "
            "otherwise it shows the sign-in page.",
            "requestBody": {
                "required": False,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/ConnectRequest"}}},
            },
            "responses": {
                "200": _ok("Send the user's browser to this URL.", {"$ref": "#/components/schemas/AuthorizationUrl"}),
                "400": _error("The body is not empty and not a valid ConnectRequest."),
                "401": UNAUTHORIZED,
                "413": TOO_LARGE,
                "429": RATE_LIMITED,
                "503": UNAVAILABLE,
            },
        }
    },
    "/oauth/google/callback": {
        "get": {
            "summary": "Google's redirect back after consent",
            "description": "Exchanges the code, checks the granted scopes, stores the tokens encrypted and "
            "queues the initial sync. No API key: the state binds the request to the user and to the browser "
            "session that started it; another browser, or one signed in as someone else, attaches nothing (400).",
            "security": _PUBLIC,
            "parameters": [
                {"name": "code", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "state", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "error", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "303": {
                    "description": "Connected; redirects to the page naming the integration.",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                "400": _html_or_json(
                    "Invalid, expired or reused state, another browser session, missing code, access denied or "
                    "permission not granted.",
                    _ERROR_REF,
                ),
                "409": _html_or_json("The same account was connected by a concurrent callback.", _ERROR_REF),
                "502": _html_or_json("Google rejected this application's OAuth client.", _ERROR_REF),
                "503": _html_or_json("Google or the database could not be reached.", _ERROR_REF),
            },
        }
    },
    "/oauth/google/done": {
        "get": {
            "summary": "The page after a successful connection, naming the integration",
            "security": _PUBLIC,
            "parameters": [{"name": "r", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {
                "200": _html_or_json("The connected integration.", {"$ref": "#/components/schemas/Connected"}),
                "400": _html_or_json("The link is invalid or expired.", _ERROR_REF),
                "503": UNAVAILABLE,
            },
        }
    },
    "/integrations": {
        "get": {
            "summary": "The caller's integrations",
            "responses": {
                "200": _ok("Integrations, oldest first.", {"type": "array", "items": ref("Integration")}),
                "401": UNAUTHORIZED,
                "503": UNAVAILABLE,
            },
        }
    },
    "/integrations/{id}": {
        "get": {
            "summary": "One of the caller's integrations",
            "parameters": [ID_PARAM],
            "responses": {
                "200": _ok("The integration.", {"$ref": "#/components/schemas/Integration"}),
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
                "503": UNAVAILABLE,
            },
        },
        "delete": {
            "summary": "Disconnect: revoke at Google (best effort), erase tokens, status=disconnected",
            "description": "Idempotent.",
            "parameters": [ID_PARAM],
            "responses": {
                "204": {"description": "Disconnected."},
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
                "503": UNAVAILABLE,
            },
        },
    },
    "/integrations/{id}/sync": {
        "post": _enqueue("Queue a sync", "The worker refreshes the token if needed, then fetches insights.")
    },
    "/integrations/{id}/refresh": {
        "post": _enqueue("Queue a token refresh now", "Forces a refresh at Google, under the integration's lock.")
    },
    "/integrations/{id}/insights": {
        "get": {
            "summary": "Stored daily metrics",
            "parameters": [
                ID_PARAM,
                {
                    "name": "start",
                    "in": "query",
                    "required": False,
                    "description": "First day (inclusive), YYYY-MM-DD; default: 29 days before end.",
                    "schema": {"type": "string", "format": "date"},
                },
                {
                    "name": "end",
                    "in": "query",
                    "required": False,
                    "description": "Last day (inclusive), YYYY-MM-DD; default: today (UTC).",
                    "schema": {"type": "string", "format": "date"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": f"Rows per answer, at most {MAX_INSIGHTS_LIMIT}; default {DEFAULT_INSIGHTS_LIMIT}.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INSIGHTS_LIMIT},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "description": "Where the previous page ended: take it from that answer's Link header.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    **_ok(
                        "Values by date, location and metric, at most `limit` of them. When more follow, the "
                        'Link header holds the next page\'s URL: `<url>; rel="next"` (RFC 8288); the last page '
                        "has none.",
                        {"type": "array", "items": ref("Insight")},
                    ),
                    "headers": {"Link": {"schema": {"type": "string"}, "description": 'The next page, rel="next".'}},
                },
                "400": _error("Malformed date, start after end, a range over 550 days, a bad limit or cursor."),
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
                "503": UNAVAILABLE,
            },
        }
    },
    "/admin/token-health": {
        "get": {
            "summary": "Active integrations whose last sync or refresh failed",
            "security": [{"adminKey": []}],
            "responses": {
                "200": _ok("The health report.", {"type": "array", "items": ref("AdminIntegration")}),
                "401": UNAUTHORIZED,
                "503": _error("ADMIN_API_KEY is not set, or the database is unavailable."),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness",
            "security": _PUBLIC,
            "responses": {"200": _ok("Alive.", ref("Health"))},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: database and broker reachable",
            "security": _PUBLIC,
            "responses": {
                "200": _ok("Ready.", ref("Readiness")),
                "503": _ok("Not ready; the body names what is down.", ref("Readiness")),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "security": _PUBLIC,
            "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "security": _PUBLIC,
            "responses": {"200": _ok("OpenAPI 3 document.", {"type": "object"})},
        }
    },
}
