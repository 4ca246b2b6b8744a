"""Google's OAuth 2.0 endpoints (code exchange with PKCE, refresh, revoke), mapped to our error classes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from common.errors import ProviderConfigError, QuotaExceeded, ReauthRequired, TransientProviderError
from common.metered_http import metered_client
from common.metrics import record_google_request
from common.quota import TOKEN, Pacer
from common.token_http import Answer, FormPoster, TransportError

BUSINESS_SCOPE = "https://www.googleapis.com/auth/business.manage"
SCOPES = ("openid", "email", BUSINESS_SCOPE)
MAX_EXPIRES_IN = 366 * 24 * 3600

MSG_INVALID_GRANT = "Token refresh failed: 400 Invalid Grant: the user must re-authenticate"
MSG_INVALID_RAPT = (
    "Token refresh failed: 400 Invalid Grant (invalid_rapt): the Google Workspace session policy "
    "requires the user to sign in again; the user must re-authenticate"
)
MSG_NO_REFRESH_TOKEN = "No refresh token available: re-authenticate with offline access"
MSG_MISSING_SCOPE = "The caller does not have permission: check OAuth scopes and re-authenticate"
MSG_PERMISSION_DENIED = MSG_MISSING_SCOPE
_CONFIG_ERRORS = {"invalid_client", "unauthorized_client", "deleted_client"}
_TRANSIENT_ERRORS = {"server_error", "temporarily_unavailable", "internal_failure", "rate_limit_exceeded"}


@dataclass(frozen=True)
class TokenGrant:
    """A token endpoint answer. Its repr never shows a token."""

    access_token: str = field(repr=False)
    expires_at: dt.datetime
    scopes: frozenset[str]
    refresh_token: str | None = field(default=None, repr=False)
    id_token_claims: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Pkce:
    verifier: str = field(repr=False)
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


@dataclass(frozen=True)
class GoogleOAuthConfig:
    client_id: str
    client_secret: str = field(repr=False)
    auth_url: str
    token_url: str
    revoke_url: str
    timeout_seconds: float = 10.0


class GoogleOAuthClient:
    """A thin, synchronous client of Google's OAuth endpoints; one per process, thread-safe."""

    def __init__(self, config: GoogleOAuthConfig, http: httpx.Client | None = None, pacer: Pacer | None = None) -> None:
        self._cfg = config
        self._pacer = pacer or Pacer()
        self._http = http or metered_client(
            {config.token_url: "token", config.revoke_url: "revoke"},
            timeout=httpx.Timeout(config.timeout_seconds, connect=min(5.0, config.timeout_seconds)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        )
        # The token endpoint (every refresh) goes through a leaner keep-alive pool (common.token_http).
        self._token_http = FormPoster(config.timeout_seconds)

    def close(self) -> None:
        self._http.close()
        self._token_http.close()

    def authorization_url(self, *, redirect_uri: str, state: str, pkce: Pkce, login_hint: str | None = None) -> str:
        params = {
            "client_id": self._cfg.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "state": state,
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
        if login_hint:
            params["login_hint"] = login_hint
        return f"{self._cfg.auth_url}?{urlencode(params)}"

    def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> TokenGrant:
        """Trade an authorization code for tokens; the grant must include the Business Profile scope."""
        self.wait_for_token_slot()
        grant = self._token_call(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": redirect_uri,
            }
        )
        if BUSINESS_SCOPE not in grant.scopes:
            raise ReauthRequired("missing_scope", MSG_MISSING_SCOPE)
        return grant

    def wait_for_token_slot(self) -> None:
        """Wait for a token-endpoint slot (GOOGLE_TOKEN_QPM); QuotaExceeded when the work should be deferred.

        `refresh` does not wait by itself: its caller holds the integration's lock by then, and waiting
        for a slot must never hold a lock or a connection, so the caller waits before locking.
        """
        self._pacer.acquire(TOKEN)

    def refresh(self, refresh_token: str) -> TokenGrant:
        """A new access token; the returned grant keeps `refresh_token` when Google sends none.

        Call `wait_for_token_slot` first, before taking any lock.
        """
        grant = self._token_call({"grant_type": "refresh_token", "refresh_token": refresh_token})
        if grant.refresh_token is None:
            grant = TokenGrant(grant.access_token, grant.expires_at, grant.scopes, refresh_token)
        if grant.scopes and BUSINESS_SCOPE not in grant.scopes:
            raise ReauthRequired("missing_scope", MSG_MISSING_SCOPE)
        return grant

    def revoke(self, token: str) -> bool:
        """Revoke a grant at Google; best effort, True when Google confirmed it."""
        try:
            resp = self._http.post(self._cfg.revoke_url, data={"token": token})
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def _token_call(self, form: dict[str, str]) -> TokenGrant:
        form = {**form, "client_id": self._cfg.client_id, "client_secret": self._cfg.client_secret}
        sent_at = time.time()
        try:
            resp = self._token_http.post(self._cfg.token_url, form)
        except TransportError as exc:
            # Not through the metered httpx client (common/metered_http.py): counted here, as it counts.
            record_google_request("token", "network")
            if exc.timed_out:
                raise TransientProviderError("timeout", "Google's token endpoint timed out") from None
            raise TransientProviderError("network", "Could not reach Google: the connection failed") from None
        record_google_request("token", resp.status_code)
        body = _json_object(resp)
        if resp.status_code == 200 and body is not None:
            return _grant_from(body, sent_at)
        error = _token_error(resp, body)
        if isinstance(error, QuotaExceeded):
            self._pacer.throttled(TOKEN, error.retry_after)
        raise error


def _json_object(resp: Answer) -> dict[str, Any] | None:
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _grant_from(body: dict[str, Any], sent_at: float) -> TokenGrant:
    access = body.get("access_token")
    expires_in = body.get("expires_in")
    if not isinstance(access, str) or not access:
        raise TransientProviderError("bad_response", "Google's token endpoint answered without an access token")
    no_expiry = TransientProviderError("bad_response", "Google's token endpoint answered without a usable expires_in")
    if not isinstance(expires_in, int | float | str):
        raise no_expiry
    try:
        seconds = int(expires_in)
    except (ValueError, OverflowError):  # "soon", NaN, Infinity
        raise no_expiry from None
    if not 0 <= seconds <= MAX_EXPIRES_IN:  # Google's are about an hour; nothing sane is negative or decades
        raise no_expiry
    refresh = body.get("refresh_token")
    scope = body.get("scope")
    return TokenGrant(
        access_token=access,
        expires_at=dt.datetime.fromtimestamp(sent_at + seconds, dt.UTC),
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        id_token_claims=_unverified_claims(body.get("id_token")),
    )


def _unverified_claims(id_token: object) -> dict[str, Any]:
    # The id_token came straight from Google's token endpoint over TLS, which Google documents as
    # sufficient to trust its claims without verifying the signature.
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return {}
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, json.JSONDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _retry_after(resp: Answer) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), or None when absent or unusable (inf, nan)."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, with no claim about the sender's zone
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _token_error(resp: Answer, body: dict[str, Any] | None) -> Exception:
    status = resp.status_code
    error = str(body.get("error", "")) if body else ""
    description = str(body.get("error_description", "")) if body else ""
    subtype = str(body.get("error_subtype", "")) if body else ""
    if error == "invalid_grant":
        if "invalid_rapt" in (subtype, description) or "invalid_rapt" in description:
            return ReauthRequired("invalid_rapt", MSG_INVALID_RAPT, status=status)
        return ReauthRequired("invalid_grant", MSG_INVALID_GRANT, status=status)
    if error in _CONFIG_ERRORS:
        return ProviderConfigError(
            error, f"Google rejected our OAuth client ({error}): check GOOGLE_CLIENT_ID/SECRET", status=status
        )
    if status == 429:
        return QuotaExceeded(
            TOKEN,
            "rate_limited",
            "Google's token endpoint asked us to slow down (429)",
            status=status,
            retry_after=_retry_after(resp),
        )
    if status in (408, 429) or status >= 500 or error in _TRANSIENT_ERRORS:
        reason = f"http_{status}" if status in (408, 429) or status >= 500 else error
        return TransientProviderError(
            reason, f"Google's token endpoint is unavailable ({status})", status=status, retry_after=_retry_after(resp)
        )
    if body is None:
        return TransientProviderError(
            "bad_response", f"Google's token endpoint answered {status} without JSON", status=status
        )
    if status == 200:
        return TransientProviderError("bad_response", "Google's token endpoint answered without an access token")
    return ProviderConfigError(
        error or f"http_{status}", f"Google's token endpoint refused the request ({error or status})", status=status
    )
