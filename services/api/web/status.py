"""An integration's state in words a person understands, from its row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from common.models import DISCONNECTED, Integration
from common.reauth_reasons import plain_reason

# "Syncing" is shown for at most this long after "Sync now": a sync that never reports back should not spin forever.
SYNCING_FOR_AT_MOST = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Status:
    key: str  # connected, syncing, needs_reconnect, provider_trouble, disconnected
    label: str
    detail: str
    causes: tuple[str, ...] = ()


def status_of(row: Integration, now: dt.datetime) -> Status:
    if row.status == DISCONNECTED:
        return Status("disconnected", "Disconnected", "Connect it again to resume syncing.")
    if row.needs_reauth:
        return Status("needs_reconnect", "Needs reconnect", *plain_reason(row.error_reason))
    if row.error_kind == "provider_config":
        return Status(
            "provider_trouble",
            "We are having trouble with Google",
            "Google is rejecting this application right now; our operators have been alerted.",
        )
    if _syncing(row, now):
        return Status("syncing", "Syncing", "Fetching your latest numbers from Google.")
    if row.last_sync_status == "error":
        return Status("provider_trouble", "Google is having trouble, we keep retrying", row.last_sync_message or "")
    return Status("connected", "Connected", "")


def _syncing(row: Integration, now: dt.datetime) -> bool:
    if row.last_synced_at is None and row.last_sync_status is None:
        return True  # the first sync, queued at connect time
    asked = row.sync_requested_at
    if asked is None or now - asked > SYNCING_FOR_AT_MOST:
        return False
    if row.last_synced_at is not None and row.last_synced_at >= asked:
        return False
    # A failure recorded after the request ends it too (the request itself leaves updated_at alone).
    return not (row.last_sync_status == "error" and row.updated_at > asked)
