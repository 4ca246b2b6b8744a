"""The token-health report: active integrations whose last sync or refresh failed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from common.health import unhealthy_integrations

COLUMNS = (
    "id",
    "user_email",
    "platform",
    "display_name",
    "needs_reauth",
    "error_kind",
    "last_synced_at",
    "last_sync_message",
)


def unhealthy(sessions: sessionmaker[Session], sync_interval_hours: float | None = None) -> list[dict[str, Any]]:
    """Active integrations in error or not synced for two sync intervals, oldest id first."""
    with sessions() as s:
        rows = unhealthy_integrations(s, sync_interval_hours)
    return [
        {
            "id": row.id,
            "user_email": email,
            "platform": row.platform,
            "display_name": row.display_name,
            "last_sync_message": row.last_sync_message,
            "last_synced_at": _iso(row.last_synced_at),
            "needs_reauth": row.needs_reauth,
            "error_kind": row.error_kind,
        }
        for row, email in rows
    ]


def table(items: list[dict[str, Any]], names: Sequence[str] = COLUMNS) -> str:
    """A plain-text table of `items`' `names` fields (the report's columns by default), a header line first."""
    return columns(names, items)


def columns(names: Sequence[str], items: list[dict[str, Any]]) -> str:
    """A plain-text table of `items`' `names` fields, a header line first."""
    cells = [[_cell(item[c]) for c in names] for item in items]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(names)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(names, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    # Names come from Google and users: no line breaks or terminal control sequences in an operator's terminal.
    return "".join(ch if ch.isprintable() else " " for ch in str(value))


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None
