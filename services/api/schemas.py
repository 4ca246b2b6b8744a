"""The API's OpenAPI 3 document, written by hand so every status code and field is stated exactly."""

from __future__ import annotations

import copy
from typing import Any


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = {**schema, "nullable": True}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def integration_schema(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    props: dict[str, Any] = {
        "id": {"type": "integer", "format": "int64", "minimum": 1},
        "platform": {"type": "string", "example": "google"},
        "display_name": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "disconnected"]},
        "token_expires_at": _nullable(time),
        "last_sync_status": _nullable({"type": "string", "enum": ["success", "error"]}),
        "last_sync_message": _nullable({"type": "string"}),
        "last_synced_at": _nullable(time),
        "needs_reauth": {"type": "boolean"},
        "error_kind": _nullable({"type": "string", "enum": ["reauth_required", "provider_config", "transient"]}),
        "created_at": time,
        **(extra or {}),
    }
    return {"type": "object", "required": list(props), "properties": props, "additionalProperties": False}


_STRING = {"type": "string"}
_SCHEMAS_ERROR_INNER = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": _STRING, "message": _STRING},
}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": _SCHEMAS_ERROR_INNER,
        },
    },
    "Integration": integration_schema(),
    "AdminIntegration": integration_schema({"user_email": _STRING}),
    "Insight": {
        "type": "object",
        "required": ["location", "metric", "date", "value"],
        "additionalProperties": False,
        "properties": {
            "location": {"type": "string", "example": "locations/123"},
            "metric": {"type": "string", "example": "WEBSITE_CLICKS"},
            "date": {"type": "string", "format": "date"},
            "value": {"type": "integer", "format": "int64"},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["integration_id", "message_id"],
        "additionalProperties": False,
        "properties": {"integration_id": {"type": "integer", "format": "int64"}, "message_id": _STRING},
    },
    "ConnectRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"login_hint": {"type": "string", "format": "email", "description": "Preselects the account."}},
    },
    "AuthorizationUrl": {
        "type": "object",
        "required": ["authorization_url"],
        "additionalProperties": False,
        "properties": {"authorization_url": {"type": "string", "format": "uri"}},
    },
    "Connected": {
        "type": "object",
        "required": ["integration_id", "display_name", "result", "first_sync"],
        "additionalProperties": False,
        "properties": {
            "integration_id": {"type": "integer", "format": "int64"},
            "display_name": _STRING,
            "result": {"type": "string", "enum": ["connected", "updated", "reconnected"]},
            "first_sync": {"type": "string", "enum": ["queued", "not_queued"]},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
    },
    "Readiness": {
        "type": "object",
        "required": ["database", "broker"],
        "properties": {
            "database": {"type": "string", "enum": ["ok", "error"]},
            "broker": {"type": "string", "enum": ["ok", "error", "not_configured"]},
            "error": _SCHEMAS_ERROR_INNER,
        },
    },
}


def openapi_document(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document served at /openapi.json; `extra_paths` come from optional route modules (reconnect)."""
    from services.api.openapi_paths import PATHS

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "integrations API",
            "version": "1.0.0",
            "description": "Connect Google Business Profile accounts, trigger syncs, read stored insights. "
            'Errors are JSON {"error": {"code", "message"}}.',
        },
        "paths": {**copy.deepcopy(PATHS), **copy.deepcopy(extra_paths or {})},
        "components": {
            "schemas": copy.deepcopy(_SCHEMAS),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "A user's API key."},
                "adminKey": {"type": "http", "scheme": "bearer", "description": "ADMIN_API_KEY."},
            },
        },
        "security": [{"apiKey": []}],
    }
