"""FakeGoogle: the fake's state (see core.py) plus its control surface and counters."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from services.fake_google.core import CLIENT_STATUSES, GRANT_ERRORS, FakeGoogleCore, Reply
from services.fake_google.data import BUSINESS_MANAGE
from services.fake_google.faults import Fault
from services.fake_google.tokens import Code

__all__ = ["FakeGoogle", "Reply"]


class FakeGoogle(FakeGoogleCore):
    """Thread-safe in-memory Google OAuth2 + Business Profile state, with test controls.

    Settable attributes: `default_user`, `token_lifetime`, `rotate_refresh_tokens`, `accounts_per_user`,
    `locations_per_account`, `clock` (a time.time-like callable).
    """

    def create_grants(self, count: int, prefix: str = "bulk") -> list[tuple[str, str]]:
        """Consent `count` new users at once (offline, full scopes): [(email, refresh_token)], for benchmarks."""
        batch = secrets.token_hex(4)
        scopes = ("openid", "email", BUSINESS_MANAGE)
        out: list[tuple[str, str]] = []
        with self._lock:
            for i in range(count):
                email = f"{prefix}-{batch}-{i}@example.com"
                code = Code(self.client_id, "", scopes, None, email, True, 0.0)
                grant = self._tokens.new_grant(code)
                assert grant.refresh_token is not None
                out.append((email, grant.refresh_token))
        return out

    def revoke_user(self, email: str) -> int:
        """Revoke every grant of `email`; return how many there were."""
        with self._lock:
            return self._tokens.revoke_user(email)

    def revoke_refresh_token(self, refresh_token: str) -> bool:
        """Revoke the grant of `refresh_token`; False when unknown."""
        with self._lock:
            grant = self._tokens.refresh.get(refresh_token)
            if grant is not None:
                self._tokens.revoke(grant)
            return grant is not None

    def fail_next(
        self, endpoint: str, status: int, count: int = 1, retry_after: int | None = None, body: str | None = None
    ) -> None:
        """Make the next `count` calls to `endpoint` ("*" for any) answer `status` (or the raw `body`)."""
        with self._lock:
            self.faults.add_next(endpoint, Fault(status, retry_after, body), count)

    def fail_ratio(
        self,
        endpoint: str,
        status: int,
        ratio: float,
        seed: int | None = None,
        retry_after: int | None = None,
        body: str | None = None,
    ) -> None:
        """Make a `ratio` fraction of calls to `endpoint` fail with `status` until cleared (ratio 0 clears)."""
        with self._lock:
            self.faults.set_ratio(endpoint, Fault(status, retry_after, body), ratio, seed)

    def clear_failures(self) -> None:
        """Drop pending one-shot failures, ratio failures and hangs (latency stays)."""
        with self._lock:
            self.faults.clear_failures()

    def set_latency(self, endpoint: str, ms: float) -> None:
        """Delay every call to `endpoint` ("*" for the default) by `ms` milliseconds; 0 removes it."""
        with self._lock:
            self.faults.set_latency(endpoint, ms)

    def hang_next(self, endpoint: str, seconds: float) -> None:
        """Make the next call to `endpoint` sleep `seconds` before answering."""
        with self._lock:
            self.faults.add_hang(endpoint, seconds)

    def grant_scopes(self, scopes: Iterable[str] | None) -> None:
        """Following consents grant only these of the requested scopes; None restores full grants."""
        with self._lock:
            self._granted_scopes = None if scopes is None else tuple(scopes)

    def deny_next_consent(self) -> None:
        """The next consent redirects with error=access_denied."""
        with self._lock:
            self._deny_consents += 1

    def forbid_location(self, name: str) -> None:
        """403 PERMISSION_DENIED for "locations/ID" (its metrics and any locations page listing it) or "accounts/ID"."""
        with self._lock:
            self._forbidden.add(name if "/" in name else f"locations/{name}")

    def set_client_status(self, status: str | None) -> None:
        """None (normal), "unauthorized_client" or "deleted_client": every token call then answers 401."""
        if status not in CLIENT_STATUSES:
            raise ValueError(f"client status must be one of {CLIENT_STATUSES}")
        with self._lock:
            self._client_status = status

    def set_grant_error(self, refresh_token_or_email: str, error: str | None) -> None:
        """Make refreshes of that token (or all of that user's) fail: "invalid_rapt", "invalid_grant"; None clears."""
        if error not in GRANT_ERRORS:
            raise ValueError(f"grant error must be one of {GRANT_ERRORS}")
        with self._lock:
            if error is None:
                self._grant_errors.pop(refresh_token_or_email, None)
            else:
                self._grant_errors[refresh_token_or_email] = error

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Expire the current access tokens (of `email`, or everyone's) so the APIs answer 401."""
        with self._lock:
            self._tokens.expire_access(email, self.clock())

    def set_user_shape(self, email: str, accounts: int | None = None, locations: int | None = None) -> None:
        """Per-user accounts count and locations per account; None falls back to the global setting."""
        with self._lock:
            self._shapes[email] = (accounts, locations)

    @property
    def calls(self) -> dict[str, int]:
        """Calls per endpoint (auth, token, revoke, accounts, locations, performance), injected failures included."""
        with self._lock:
            return dict(self._calls)

    @property
    def refresh_calls_by_token(self) -> dict[str, int]:
        """refresh_token grant requests per presented refresh token."""
        with self._lock:
            return dict(self._refresh_by_token)

    @property
    def total_refresh_calls(self) -> int:
        """Every refresh_token grant request received."""
        with self._lock:
            return self._total_refresh

    def refresh_calls_for(self, email: str) -> int:
        """refresh_token grant requests made with any refresh token ever issued to `email`."""
        with self._lock:
            return self._refresh_by_user.get(email, 0)

    def issued_tokens(self) -> set[str]:
        """Every access and refresh token ever issued (for secret-leak checks)."""
        with self._lock:
            return set(self._tokens.issued)

    def stats(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        with self._lock:
            return {
                "calls": dict(self._calls),
                "total_refresh_calls": self._total_refresh,
                "refresh_calls_by_user": dict(self._refresh_by_user),
                "refresh_calls_by_token": dict(self._refresh_by_token),
                "issued_tokens": sorted(self._tokens.issued),
                "quota": self.quotas.stats(),
            }

    def call_times(self, api: str) -> list[float]:
        """When each call to `api` (`performance`, `token`, ...) arrived, in order (the fake's clock)."""
        with self._lock:
            return self.quotas.call_times(api)

    def set_quota(self, qpm: int | None, token_qpm: int | None = None, *, keep_on_reset: bool = False) -> None:
        """Enforce `qpm` requests per minute on each Business Profile API (`token_qpm` on the token endpoint).

        None lifts the limit. Takes effect at once: a quota lowered mid-run is another app eating it.
        """
        with self._lock:
            self.quotas.qpm, self.quotas.token_qpm = qpm, token_qpm
            if keep_on_reset:
                self._quota_defaults = (qpm, token_qpm)

    def reset(self) -> None:
        """Forget every token, counter, failure and setting."""
        with self._lock:
            self._init()
