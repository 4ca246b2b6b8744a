"""`ensure_fresh_token`: a valid access token for an integration, refreshed under its lock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common.cipher import TokenCipher
from common.errors import (
    CipherError,
    IntegrationInactive,
    IntegrationNotFound,
    ProviderConfigError,
    ProviderError,
    QuotaExceeded,
    ReauthRequired,
    TransientProviderError,
)
from common.events import Event, IncidentClosed, IncidentOpened, Publisher, discard
from common.google_oauth import MSG_NO_REFRESH_TOKEN, TokenGrant
from common.locked_row import LockedRows, lock_row, write_changes
from common.locking import lock_integration
from common.logging import get_logger
from common.metrics import record_refresh
from common.models import ACTIVE, Incident, Integration, utcnow

log = get_logger("integrations.token")

# The contract's error kinds are reauth_required, provider_config and transient: an undecryptable token is
# our configuration's fault, like a broken OAuth client, and needs an operator; its reason tells them apart.
UNDECRYPTABLE = "undecryptable"
PERMISSION_DENIED = "permission_denied"  # the reason of a Business Profile 403 (common.gbp_client)
MSG_UNDECRYPTABLE = (
    "The stored credentials cannot be decrypted: an encryption key is missing from the service's "
    "configuration. The operators must restore it; reconnecting is not needed."
)


class Refresher(Protocol):
    def wait_for_token_slot(self) -> None: ...

    def refresh(self, refresh_token: str) -> TokenGrant: ...


@dataclass
class TokenService:
    """Refreshes tokens one integration at a time across every process (ARCHITECTURE.md rule 1)."""

    sessions: sessionmaker[Session]
    cipher: TokenCipher
    oauth: Refresher
    publish: Publisher = discard
    lock_timeout_seconds: float = 30.0
    clock: Callable[[], dt.datetime] = field(default=utcnow)
    # PostgreSQL: the refresh's own pool and two-round-trip transaction (common.locked_row); None: the session path.
    locked_rows: LockedRows | None = None

    def ensure_fresh_token(
        self, integration_id: int, margin_seconds: int = 300, *, rejected_token: str | None = None
    ) -> str:
        """An access token valid for at least `margin_seconds`, refreshing it first when needed.

        `rejected_token` is an access token an API just answered 401 to: it is refreshed even if its
        expiry looks fine, unless another worker already replaced it.

        A token another caller refreshed since this call began is used as it is, even when it is valid
        for less than the margin (a token whose whole life is shorter): a new one would be no fresher.
        """
        called_at = self.clock()
        try:
            if rejected_token is None:
                with self.sessions() as s:
                    row = s.get(Integration, integration_id)
                    if row is None:
                        raise IntegrationNotFound(f"integration {integration_id} does not exist")
                    _check_active(row)
                    if self._fresh(row, margin_seconds):
                        return self._access_token(row)
            return self._refresh_locked(
                integration_id, margin_seconds, rejected_token, log_skip=False, requested_at=called_at
            )[0]
        except CipherError as exc:
            self.record_cipher_failure(integration_id, exc)
            raise

    def refresh(self, integration_id: int, within_seconds: int, *, requested_at: dt.datetime | None = None) -> bool:
        """Refresh when the token expires within `within_seconds`; True when a provider call was made.

        `requested_at` is when the refresh was asked for: a refresh stored since then is this one already,
        so a redelivered or repeated request makes no second provider call, even when the window is wider
        than a token's life (the nightly 24 h, "refresh now"), where "still fresh" cannot tell.

        No unlocked look first: in the nightly run nearly every integration is due, and the look under
        the lock is needed anyway, so a token that is not due costs a row lock instead of a transaction more.
        """
        try:
            _, called = self._refresh_locked(
                integration_id, within_seconds, None, log_skip=True, requested_at=requested_at
            )
            return called
        except CipherError as exc:
            self.record_cipher_failure(integration_id, exc)
            raise

    def record_cipher_failure(self, integration_id: int, error: CipherError) -> None:
        """A stored token does not decrypt (its key left TOKEN_ENCRYPTION_KEYS, or the value was altered).

        Shown on the row, so `integrations health` and /admin/token-health list it, and logged for the
        operators (the error names the key id, never a token). No re-auth and no user email: restoring
        the key repairs it, and the next successful refresh or sync clears the state.
        """
        log.error(
            "token.decrypt.failed",
            integration_id=integration_id,
            error_kind=ProviderConfigError.kind,
            reason=UNDECRYPTABLE,
            message=str(error),
            operator_action_required=True,
        )
        record_refresh("failed", UNDECRYPTABLE)
        with self.sessions.begin() as s:
            row = _locked_or_none(s, integration_id, self.lock_timeout_seconds)
            if row is None or row.status != ACTIVE or row.needs_reauth:
                return  # disconnected meanwhile; or a re-auth state, which outranks it: a reconnect stores new tokens
            row.last_sync_status = "error"
            row.last_sync_message = MSG_UNDECRYPTABLE
            row.error_kind = ProviderConfigError.kind
            row.error_reason = UNDECRYPTABLE
            row.last_refresh_failed_at = self.clock()

    def record_transient_failure(self, integration_id: int, error: TransientProviderError) -> None:
        """Retries are exhausted: show the error, but the grant is fine, so no re-auth and no incident."""
        with self.sessions.begin() as s:
            # Under the lock: a refresh running now may be about to find the grant revoked.
            row = _locked_or_none(s, integration_id, self.lock_timeout_seconds)
            # A re-auth state outranks a transient failure: only a new grant clears it. A disconnected
            # integration (the user disconnected while the retries ran) shows no sync result.
            if row is None or row.status != ACTIVE or row.needs_reauth:
                return
            mark_failed(row, error, self.clock())

    def _fresh(self, row: Integration, margin_seconds: int) -> bool:
        exp = row.token_expires_at
        return (
            bool(row.access_token_enc) and exp is not None and exp > self.clock() + dt.timedelta(seconds=margin_seconds)
        )

    def _access_token(self, row: Integration) -> str:
        assert row.access_token_enc is not None
        return self.cipher.decrypt(row.access_token_enc, integration_id=row.id, field="access_token")

    def _refresh_locked(
        self,
        integration_id: int,
        margin_seconds: int,
        rejected_token: str | None,
        *,
        log_skip: bool,
        requested_at: dt.datetime | None = None,
    ) -> tuple[str, bool]:
        started, called_at = time.perf_counter(), self.clock()
        # A slot is taken before the lock (waiting holds nothing); one taken for a refresh another
        # worker has done meanwhile is a slot lost, not a call made.
        self.oauth.wait_for_token_slot()
        check = _Check(margin_seconds, rejected_token, requested_at or called_at, requested_at, log_skip, started)
        known: _KnownFailure | None = None
        if self.locked_rows is not None:
            lean = self._refresh_lean(integration_id, check)
            if isinstance(lean, tuple):
                return lean
            known = lean
        events: list[Event] = []
        failure: ProviderError | None = None
        token = ""
        with self.sessions.begin() as s:
            row, read = lock_row(s, integration_id, self.lock_timeout_seconds)
            _check_active(row)
            current = self._unless_due(row, check)
            if current is not None:
                return current, False
            if not row.refresh_token_enc:
                failure = ReauthRequired("no_refresh_token", MSG_NO_REFRESH_TOKEN)
            elif known is not None and known.refresh_token_enc == row.refresh_token_enc:
                failure = known.error  # the lean path's call with this very grant failed: not asked again
            else:
                refresh_token = self.cipher.decrypt(row.refresh_token_enc, integration_id=row.id, field="refresh_token")
                try:
                    grant = self.oauth.refresh(refresh_token)
                except QuotaExceeded:
                    raise  # pacing, not failure (rule 8): deferred by the caller, nothing logged as failed
                except TransientProviderError as exc:
                    _log_failed(row, exc, started)
                    raise
                except ProviderError as exc:
                    failure = exc
            if failure is None:
                token = grant.access_token
                # An open incident implies a failure counted since the last stored grant (open_incident
                # makes sure): with none, the incident lookup, a query per refresh, is skipped.
                failures_since_grant = row.refresh_failure_count
                denied = _permission_denied(row)
                store_grant(row, grant, self.cipher, self.clock(), clear_error=not denied)
                if failures_since_grant and not denied:
                    events += close_incident(s, row, self.clock())
            else:
                mark_failed(row, failure, self.clock())
                events += open_incident(s, row, failure, self.clock())
            write_changes(s, row, read)
            platform, expires_at = row.platform, row.token_expires_at
        if failure is not None:
            _log_failed(row, failure, started)
            self.publish(events)
            raise failure
        _log_succeeded(integration_id, platform, expires_at, started)
        if events:
            self.publish(events)
        return token, True

    def _refresh_lean(self, integration_id: int, check: _Check) -> tuple[str, bool] | _KnownFailure | None:
        """The common refresh in two round trips (common.locked_row.LockedRows): lock and read, call, write and commit.

        Returns the token (and whether a call was made) when done. What needs the ORM in the same transaction
        goes to the session path, which locks again and decides again: None when nothing was asked of the
        provider (failures counted since the last grant, so maybe an incident to close; a re-auth state; no
        refresh token), the failure when the provider refused the grant (recorded there, with its incident,
        unless the grant changed meanwhile). Nothing is written here in those cases.
        """
        assert self.locked_rows is not None
        with self.locked_rows.locked(integration_id, self.lock_timeout_seconds) as locked:
            row = locked.row
            _check_active(row)
            current = self._unless_due(row, check)
            if current is not None:
                return current, False
            if not row.refresh_token_enc or row.refresh_failure_count or row.needs_reauth:
                return None
            refresh_token = self.cipher.decrypt(row.refresh_token_enc, integration_id=row.id, field="refresh_token")
            try:
                grant = self.oauth.refresh(refresh_token)
            except QuotaExceeded:
                raise
            except TransientProviderError as exc:
                _log_failed(row, exc, check.started)
                raise
            except ProviderError as exc:
                return _KnownFailure(row.refresh_token_enc, exc)
            store_grant(row, grant, self.cipher, self.clock())
            locked.commit()
        _log_succeeded(integration_id, row.platform, row.token_expires_at, check.started)
        return grant.access_token, True

    def _unless_due(self, row: Integration, check: _Check) -> str | None:
        """The current access token when this refresh is not to be made (logged as skipped); None when it is."""
        refreshed_since = (
            check.requested_at is not None
            and row.last_refreshed_at is not None
            and row.last_refreshed_at >= check.requested_at
            and self._fresh(row, 0)
        )
        if not (refreshed_since or self._fresh(row, check.margin_seconds)):
            return None
        current = self._access_token(row)
        if check.rejected_token is not None and current == check.rejected_token:
            return None
        if check.log_skip or check.rejected_token is not None:
            _log_skip(row, _skip_reason(row, check.rejected_token, check.asked_at), check.started)
        return current


@dataclass(frozen=True)
class _Check:
    """What one refresh call decides by under the lock."""

    margin_seconds: int
    rejected_token: str | None
    asked_at: dt.datetime  # requested_at, else when the call began
    requested_at: dt.datetime | None
    log_skip: bool
    started: float


@dataclass(frozen=True)
class _KnownFailure:
    """The provider refused the grant stored as `refresh_token_enc`."""

    refresh_token_enc: str
    error: ProviderError


def _permission_denied(row: Integration) -> bool:
    # A Business Profile 403 is not about the grant: a refresh that works does not lift it, so its
    # re-auth state and incident stay until the user reconnects (else: an email per sync and night).
    return bool(row.needs_reauth) and row.error_reason == PERMISSION_DENIED


def store_grant(
    row: Integration, grant: TokenGrant, cipher: TokenCipher, now: dt.datetime, *, clear_error: bool = True
) -> None:
    """Encrypt and store a grant's tokens; the stored refresh token stays when the grant has none.

    `clear_error=False` keeps the row's error state and failure count (see PERMISSION_DENIED).
    """
    row.access_token_enc = cipher.encrypt(grant.access_token, integration_id=row.id, field="access_token")
    if grant.refresh_token:
        row.refresh_token_enc = cipher.encrypt(grant.refresh_token, integration_id=row.id, field="refresh_token")
    row.token_expires_at = grant.expires_at
    if grant.scopes:
        row.granted_scopes = " ".join(sorted(grant.scopes))
    row.last_refreshed_at = now
    if not clear_error:
        return
    row.refresh_failure_count = 0
    if row.error_kind is not None or row.needs_reauth:
        row.needs_reauth = False
        row.error_kind = None
        row.error_reason = None
        if row.last_sync_status == "error":
            row.last_sync_status = "success" if row.last_synced_at else None
            row.last_sync_message = None


def mark_failed(row: Integration, error: ProviderError, now: dt.datetime) -> None:
    """Record a failed refresh or sync on the row: error status, message, kind, re-auth flag.

    A re-auth state outranks any other failure: the grant is gone until the user reconnects, whatever
    else fails meanwhile (our OAuth client, say), so only the failure is counted then.
    """
    if row.needs_reauth and not isinstance(error, ReauthRequired):
        row.refresh_failure_count = (row.refresh_failure_count or 0) + 1
        row.last_refresh_failed_at = now
        return
    row.last_sync_status = "error"
    row.last_sync_message = error.message
    row.error_kind = error.kind
    row.error_reason = error.reason
    row.needs_reauth = isinstance(error, ReauthRequired)
    row.refresh_failure_count = (row.refresh_failure_count or 0) + 1
    row.last_refresh_failed_at = now


def open_incident(s: Session, row: Integration, error: ProviderError, now: dt.datetime) -> list[Event]:
    if not isinstance(error, ReauthRequired | ProviderConfigError):
        return []
    # The refresh path looks for an incident to close only when failures were counted (see _refresh_locked).
    row.refresh_failure_count = max(1, row.refresh_failure_count or 0)
    existing = s.execute(
        select(Incident).where(Incident.integration_id == row.id, Incident.closed_at.is_(None))
    ).scalar_one_or_none()
    if existing is not None:
        if not (existing.kind == ProviderConfigError.kind and isinstance(error, ReauthRequired)):
            return []
        # Only the user can fix this one: the operators' incident gives way (their email tells no user),
        # closed without an event ("reconnected" would be false), so the user's email goes out.
        existing.closed_at = now
        s.flush()  # before the insert: at most one open incident per integration (uq_incidents_open)
    incident = Incident(
        integration_id=row.id, kind=error.kind, reason=error.reason, message=error.message, opened_at=now
    )
    s.add(incident)
    s.flush()
    return [IncidentOpened(row.id, incident.id, error.kind, error.reason)]


def close_incident(s: Session, row: Integration, now: dt.datetime) -> list[Event]:
    open_ = s.execute(
        select(Incident).where(Incident.integration_id == row.id, Incident.closed_at.is_(None))
    ).scalar_one_or_none()
    if open_ is None:
        return []
    open_.closed_at = now
    return [IncidentClosed(row.id, open_.id, open_.kind)]


def _locked_or_none(s: Session, integration_id: int, timeout_seconds: float) -> Integration | None:
    try:
        return lock_integration(s, integration_id, timeout_seconds)
    except IntegrationNotFound:
        return None


def _check_active(row: Integration) -> None:
    if row.status != ACTIVE:
        raise IntegrationInactive(f"integration {row.id} is {row.status}")


def _skip_reason(row: Integration, rejected_token: str | None, called_at: dt.datetime) -> str:
    if rejected_token is None and (row.last_refreshed_at is None or row.last_refreshed_at < called_at):
        return "not_due"
    return "refreshed_by_another_worker"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _log_skip(row: Integration, reason: str, started: float) -> None:
    record_refresh("skipped", reason)
    log.info(
        "token.refresh.skipped",
        integration_id=row.id,
        platform=row.platform,
        duration_ms=_ms(started),
        reason=reason,
        expires_at=row.token_expires_at.isoformat() if row.token_expires_at else None,
    )


def _log_succeeded(integration_id: int, platform: str, expires_at: dt.datetime | None, started: float) -> None:
    record_refresh("succeeded")
    log.info(
        "token.refresh.succeeded",
        integration_id=integration_id,
        platform=platform,
        duration_ms=_ms(started),
        expires_at=expires_at.isoformat() if expires_at else None,
    )


def _log_failed(row: Integration, error: ProviderError, started: float) -> None:
    record_refresh("failed", error.reason)
    level = "error" if isinstance(error, ProviderConfigError) else "warning"
    getattr(log, level)(
        "token.refresh.failed",
        integration_id=row.id,
        platform=row.platform,
        duration_ms=_ms(started),
        error_kind=error.kind,
        reason=error.reason,
        message=error.message,
        operator_action_required=isinstance(error, ProviderConfigError),
    )
