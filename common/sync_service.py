"""Syncing one integration: a fresh token, its locations, their daily metrics, upserted on the natural key.

Window (incremental): a sync reads from REVISED_DAYS before the day of the last successful sync up to
yesterday (today is incomplete; Google revises the last few days, so those are re-read and upserted);
the first sync (`last_synced_at` is NULL) backfills 90 days, and a sync after a long gap reads at most
90. A daily sync so reads 4 days instead of the 30 it used to re-read: the same number of calls (one
per location), a seventh of the payload and of the upserts. Values Google omits (zero) are stored as 0.

Errors (ARCHITECTURE.md rule 2): a Business Profile 401 forces one refresh and one retry per sync, a
second 401 is transient; a 403 PERMISSION_DENIED (ReauthRequired) or another refused request
(ProviderConfigError) marks the integration like a failed refresh and opens its incident once;
transient errors leave the state alone and propagate, for the caller to retry.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from common.db import DATABASE_ERRORS
from common.errors import (
    AccessTokenRejected,
    IntegrationInactive,
    IntegrationNotFound,
    LockTimeout,
    ProviderConfigError,
    ProviderError,
    QuotaExceeded,
    ReauthRequired,
    TransientProviderError,
)
from common.gbp_client import DailyValue, GbpLocation
from common.locking import lock_integration
from common.logging import get_logger
from common.metrics import record_sync
from common.models import ACTIVE, Insight, Integration, Location, utcnow
from common.token_service import UNDECRYPTABLE, mark_failed, open_incident

if TYPE_CHECKING:
    from common.bootstrap import Container

WINDOW_DAYS = 30
BACKFILL_DAYS = 90
REVISED_DAYS = 3
CHUNK_ROWS = 1000
MSG_REJECTED_TWICE = "Business Profile rejected a freshly refreshed access token"

T = TypeVar("T")
log = get_logger("integrations.sync")


@dataclass(frozen=True)
class SyncResult:
    """What one successful sync stored: locations seen and daily values upserted."""

    locations: int
    values: int


def sync_window(today: dt.date, first_sync: bool, last_synced: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The inclusive date range a sync fetches, ending yesterday: 90 days on the first sync; else from
    REVISED_DAYS before `last_synced` (the last successful sync's day; 30 days when not given), at most 90."""
    end = today - dt.timedelta(days=1)
    backfill = end - dt.timedelta(days=BACKFILL_DAYS - 1)
    if first_sync:
        return backfill, end
    if last_synced is None:
        return end - dt.timedelta(days=WINDOW_DAYS - 1), end
    return max(backfill, min(end, last_synced - dt.timedelta(days=REVISED_DAYS))), end


def sync_integration(container: Container, integration_id: int, *, today: dt.date | None = None) -> SyncResult:
    """Sync one integration's insights; logs one `sync.succeeded` or `sync.failed` line.

    Raises IntegrationNotFound / IntegrationInactive (nothing to do), ReauthRequired or
    ProviderConfigError (state recorded, do not retry) and TransientProviderError, LockTimeout or
    OperationalError (state unchanged, retry later).
    """
    started = time.perf_counter()
    with container.sessions() as s:
        row = s.get(Integration, integration_id)
        if row is None:
            raise IntegrationNotFound(f"integration {integration_id} does not exist")
        if row.status != ACTIVE:
            raise IntegrationInactive(f"integration {integration_id} is {row.status}")
        platform, last = row.platform, row.last_synced_at
    start, end = sync_window(today or utcnow().date(), last is None, last.date() if last else None)
    fields: dict[str, Any] = {"integration_id": integration_id, "platform": platform}
    try:
        result = _sync(container, integration_id, start, end)
    except QuotaExceeded:
        raise  # pacing, not failure: the worker defers the work and logs `sync.deferred` (rule 8)
    except (ProviderError, LockTimeout, *DATABASE_ERRORS) as exc:
        kind, reason, message = _describe(exc)
        level = "error" if isinstance(exc, ProviderConfigError) else "warning"
        record_sync("failed")
        getattr(log, level)(
            "sync.failed", **fields, duration_ms=_ms(started), error_kind=kind, reason=reason, message=message
        )
        raise
    record_sync("succeeded")
    log.info(
        "sync.succeeded",
        **fields,
        duration_ms=_ms(started),
        locations=result.locations,
        values=result.values,
        start=start.isoformat(),
        end=end.isoformat(),
    )
    return result


def _sync(c: Container, integration_id: int, start: dt.date, end: dt.date) -> SyncResult:
    call = _Caller(c, integration_id)
    locations: list[GbpLocation] = []
    for account in call(partial(_accounts, c)):
        locations += call(partial(_locations, c, account))
    with c.sessions.begin() as s:
        _upsert_locations(s, integration_id, locations)
        _check_still_active(s, integration_id)
    values = 0
    for loc in locations:
        daily = call(partial(_daily, c, loc.name, start, end))
        with c.sessions.begin() as s:
            _upsert_insights(s, integration_id, daily)
            _check_still_active(s, integration_id)
        values += len(daily)
    _record_success(c, integration_id)
    return SyncResult(len(locations), values)


def _accounts(c: Container, token: str) -> list[str]:
    return list(c.gbp.accounts(token))


def _locations(c: Container, account: str, token: str) -> list[GbpLocation]:
    return list(c.gbp.locations(token, account))


def _daily(c: Container, location: str, start: dt.date, end: dt.date, token: str) -> list[DailyValue]:
    return c.gbp.daily_metrics(token, location, start, end)


class _Caller:
    """Runs Business Profile calls with the integration's token; one forced refresh per sync on a 401."""

    def __init__(self, c: Container, integration_id: int) -> None:
        self._c = c
        self._id = integration_id
        self._margin = c.settings.refresh_margin_seconds
        self._token = c.tokens.ensure_fresh_token(integration_id, self._margin)
        self._forced = False

    def __call__(self, fn: Callable[[str], T]) -> T:
        try:
            return self._guarded(fn)
        except AccessTokenRejected:
            if self._forced:
                raise TransientProviderError("unauthenticated", MSG_REJECTED_TWICE, status=401) from None
        self._forced = True
        self._token = self._c.tokens.ensure_fresh_token(self._id, self._margin, rejected_token=self._token)
        try:
            return self._guarded(fn)
        except AccessTokenRejected:
            raise TransientProviderError("unauthenticated", MSG_REJECTED_TWICE, status=401) from None

    def _guarded(self, fn: Callable[[str], T]) -> T:
        try:
            return fn(self._token)
        except (ReauthRequired, ProviderConfigError) as exc:
            _record_failure(self._c, self._id, exc)
            raise


def _record_failure(c: Container, integration_id: int, error: ProviderError) -> None:
    """Mark the row like a failed refresh and open its incident; publish only after the commit."""
    with c.sessions.begin() as s:
        row = _lock_active(c, s, integration_id)
        now = c.tokens.clock()
        mark_failed(row, error, now)
        events = open_incident(s, row, error, now)
    if events:
        c.tokens.publish(events)


def _record_success(c: Container, integration_id: int) -> None:
    with c.sessions.begin() as s:
        row = _lock_active(c, s, integration_id)
        row.last_synced_at = c.tokens.clock()
        # A re-auth or client-config state came from a failed refresh and still stands (the access token
        # can outlive a revoked refresh token by up to an hour); only a successful refresh clears it.
        # An undecryptable-token state is cleared too: this sync has just decrypted the token.
        if not row.needs_reauth and (row.error_kind in (None, "transient") or row.error_reason == UNDECRYPTABLE):
            row.last_sync_status = "success"
            row.last_sync_message = None
            row.error_kind = None
            row.error_reason = None


def _lock_active(c: Container, s: Session, integration_id: int) -> Integration:
    """The integration's row, locked; IntegrationInactive when it was disconnected since the sync began."""
    row = lock_integration(s, integration_id, c.settings.lock_timeout_seconds)
    if row.status != ACTIVE:
        raise IntegrationInactive(f"integration {integration_id} is {row.status}")
    return row


def _check_still_active(s: Session, integration_id: int) -> None:
    """Raise IntegrationInactive, rolling back `s`'s writes, when the integration was disconnected meanwhile.

    FOR KEY SHARE waits for a disconnect holding the row and then reads what it committed, and a later
    disconnect waits for this transaction: no data is stored after the disconnect. It is the lock the
    inserts' foreign key checks take anyway.
    """
    status = s.scalar(
        select(Integration.status).where(Integration.id == integration_id).with_for_update(read=True, key_share=True)
    )
    if status is None:
        raise IntegrationNotFound(f"integration {integration_id} does not exist")
    if status != ACTIVE:
        raise IntegrationInactive(f"integration {integration_id} is {status}")


def _insert(s: Session, entity: type[Location] | type[Insight]) -> Any:
    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(entity)


def _upsert_locations(s: Session, integration_id: int, locations: Sequence[GbpLocation]) -> None:
    now = utcnow()
    rows = [
        {"integration_id": integration_id, "account_name": loc.account, "name": loc.name, "title": loc.title}
        for loc in locations
    ]
    _upsert(s, Location, rows, ["integration_id", "name"], ["account_name", "title"], now)


def _upsert_insights(s: Session, integration_id: int, values: Sequence[DailyValue]) -> None:
    rows = [
        {"integration_id": integration_id, "location": v.location, "metric": v.metric, "date": v.date, "value": v.value}
        for v in values
    ]
    # Unchanged values are not rewritten: most of a re-read month is identical.
    _upsert(s, Insight, rows, ["integration_id", "location", "metric", "date"], ["value"], utcnow(), only_changed=True)


def _upsert(
    s: Session,
    entity: type[Location] | type[Insight],
    rows: list[dict[str, Any]],
    key: list[str],
    columns: list[str],
    now: dt.datetime,
    *,
    only_changed: bool = False,
) -> None:
    """Insert or update `rows` on their natural key with one fixed statement run over many parameter sets.

    The statement is compiled once and cached; a multi-row VALUES built per call cost most of a re-sync's CPU.
    """
    if not rows:
        return
    for row in rows:
        row["updated_at"] = now
    stmt = _insert(s, entity)
    changed = [getattr(entity, c) != getattr(stmt.excluded, c) for c in columns]
    stmt = stmt.on_conflict_do_update(
        index_elements=key,
        set_={**{c: getattr(stmt.excluded, c) for c in columns}, "updated_at": stmt.excluded.updated_at},
        where=or_(*changed) if only_changed else None,
    )
    for chunk in _chunks(rows):
        s.execute(stmt, chunk)


def _chunks(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [rows[i : i + CHUNK_ROWS] for i in range(0, len(rows), CHUNK_ROWS)]


def _describe(exc: Exception) -> tuple[str, str, str]:
    if isinstance(exc, ProviderError):
        return exc.kind, exc.reason, exc.message
    if isinstance(exc, LockTimeout):
        return "transient", "lock_timeout", str(exc)
    return "transient", "database", f"database error ({type(exc.__cause__ or exc).__name__})"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
