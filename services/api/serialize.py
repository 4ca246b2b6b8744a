"""JSON shapes of the contract's HTTP table: integrations and insights."""

from __future__ import annotations

import datetime as dt
from typing import Any

from common.models import Insight, Integration

INTEGRATION_FIELDS = (
    "id",
    "platform",
    "display_name",
    "status",
    "token_expires_at",
    "last_sync_status",
    "last_sync_message",
    "last_synced_at",
    "needs_reauth",
    "error_kind",
    "created_at",
)


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with an explicit offset (`+00:00`)."""
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def integration_json(row: Integration) -> dict[str, Any]:
    return {
        "id": row.id,
        "platform": row.platform,
        "display_name": row.display_name,
        "status": row.status,
        "token_expires_at": iso(row.token_expires_at),
        "last_sync_status": row.last_sync_status,
        "last_sync_message": row.last_sync_message,
        "last_synced_at": iso(row.last_synced_at),
        "needs_reauth": bool(row.needs_reauth),
        "error_kind": row.error_kind,
        "created_at": iso(row.created_at),
    }


def insight_json(row: Insight) -> dict[str, Any]:
    return {"location": row.location, "metric": row.metric, "date": row.date.isoformat(), "value": int(row.value)}
