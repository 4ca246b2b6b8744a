"""The fake's in-memory state and the logic behind its endpoints; FakeGoogle (state.py) adds the controls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from services.fake_google import errors
from services.fake_google.data import (
    BUSINESS_MANAGE,
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_USER,
    Layout,
    build_layout,
)
from services.fake_google.faults import Fault, Faults
from services.fake_google.quota import Quotas
from services.fake_google.tokens import CODE_LIFETIME, Code, Grant, TokenStore, id_token, s256

Reply = tuple[int, dict[str, Any]]
CLIENT_STATUSES = (None, "unauthorized_client", "deleted_client")
GRANT_ERRORS = (None, "invalid_grant", "invalid_rapt")


class FakeGoogleCore:
    """Thread-safe in-memory Google OAuth2 + Business Profile state and request handling."""

    def __init__(
        self,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock
        self._lock = threading.Lock()
        self._quota_defaults: tuple[int | None, int | None] = (None, None)
        self._init()

    def _init(self) -> None:
        # Bumped by every reset: a request begun before a reset (a hung or slow call of an earlier test)
        # must not count against the state that follows it.
        self.generation = getattr(self, "generation", 0) + 1
        self.default_user = DEFAULT_USER
        self.token_lifetime = 3599
        self.rotate_refresh_tokens = False
        self.accounts_per_user = 1
        self.locations_per_account = 2
        self.faults = Faults()
        self.quotas = Quotas(*self._quota_defaults)
        self._tokens = TokenStore()
        self._client_status: str | None = None
        self._granted_scopes: tuple[str, ...] | None = None
        self._deny_consents = 0
        self._forbidden: set[str] = set()
        self._grant_errors: dict[str, str] = {}
        self._shapes: dict[str, tuple[int | None, int | None]] = {}
        self._layouts: dict[tuple[str, int, int], Layout] = {}
        self._calls: dict[str, int] = {}
        self._refresh_by_token: dict[str, int] = {}
        self._refresh_by_user: dict[str, int] = {}
        self._total_refresh = 0

    def begin(self, endpoint: str) -> tuple[float, Fault | None]:
        """Count one call to `endpoint`; return the delay to apply and an injected fault, if any."""
        with self._lock:
            self._calls[endpoint] = self._calls.get(endpoint, 0) + 1
            delay, fault = self.faults.take(endpoint)
            return delay, fault or self.quotas.check(endpoint, self.clock())

    def authorize(self, params: Mapping[str, str]) -> tuple[int, str | dict[str, Any]]:
        """Auto-consent: (302, redirect location) or (400, error body)."""
        client_id = params.get("client_id")
        redirect_uri = params.get("redirect_uri")
        if client_id != self.client_id:
            return 400, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
            return 400, errors.invalid_request("Missing or invalid redirect_uri.")
        if params.get("response_type") != "code":
            return 400, {"error": "unsupported_response_type"}
        challenge = params.get("code_challenge") or None
        if challenge is not None and params.get("code_challenge_method") != "S256":
            return 400, errors.invalid_request("code_challenge_method must be S256.")
        state = params.get("state")
        with self._lock:
            if self._deny_consents > 0:
                self._deny_consents -= 1
                return 302, _redirect(redirect_uri, error="access_denied", state=state)
            requested = tuple(params.get("scope", "").split())
            allowed = self._granted_scopes
            scopes = requested if allowed is None else tuple(s for s in requested if s in allowed)
            code = Code(
                client_id=client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                challenge=challenge,
                user=params.get("login_hint") or self.default_user,
                offline=params.get("access_type") == "offline" and "consent" in params.get("prompt", "").split(),
                expires_at=self.clock() + CODE_LIFETIME,
            )
            value = self._tokens.new_code(code)
        return 302, _redirect(redirect_uri, code=value, scope=" ".join(scopes), state=state)

    def token(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> Reply:
        """The token endpoint: (status, JSON body)."""
        grant_type = form.get("grant_type")
        client_id, secret = basic if basic is not None else (form.get("client_id"), form.get("client_secret"))
        with self._lock:
            if grant_type == "refresh_token":
                self._count_refresh(form.get("refresh_token"))
            if self._client_status == "deleted_client":
                return 401, {"error": "deleted_client", "error_description": "The OAuth client was deleted."}
            if self._client_status == "unauthorized_client":
                return 401, {"error": "unauthorized_client", "error_description": "Unauthorized"}
            if client_id != self.client_id or secret != self.client_secret:
                return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
            if grant_type == "refresh_token":
                return self._refresh(form)
            if grant_type == "authorization_code":
                return self._exchange(form)
            return 400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant_type}"}

    def note_refresh(self, form: Mapping[str, str]) -> None:
        """Count a refresh request that an injected fault answered."""
        if form.get("grant_type") == "refresh_token":
            with self._lock:
                self._count_refresh(form.get("refresh_token"))

    def _count_refresh(self, token: str | None) -> None:
        self._total_refresh += 1
        if token:
            self._refresh_by_token[token] = self._refresh_by_token.get(token, 0) + 1
            owner = self._tokens.rt_owner.get(token)
            if owner is not None:
                self._refresh_by_user[owner] = self._refresh_by_user.get(owner, 0) + 1

    def _exchange(self, form: Mapping[str, str]) -> Reply:
        value, redirect_uri = form.get("code"), form.get("redirect_uri")
        if not value or redirect_uri is None:
            return 400, errors.invalid_request("Missing required parameter: code or redirect_uri")
        code = self._tokens.codes.pop(value, None)  # single use, even when the exchange below fails
        if code is None:
            return 400, errors.invalid_grant("Malformed auth code.")
        now = self.clock()
        verifier = form.get("code_verifier")
        if (
            code.expires_at < now
            or code.client_id != self.client_id
            or code.redirect_uri != redirect_uri
            or (code.challenge is not None and (not verifier or s256(verifier) != code.challenge))
        ):
            return 400, errors.invalid_grant("Bad Request")
        grant = self._tokens.new_grant(code)
        body = self._access_body(grant, now)
        if grant.refresh_token is not None:
            body["refresh_token"] = grant.refresh_token
        if "openid" in grant.scopes:
            body["id_token"] = id_token(self.client_id, grant.user, now, self.token_lifetime)
        return 200, body

    def _refresh(self, form: Mapping[str, str]) -> Reply:
        token = form.get("refresh_token")
        if not token:
            return 400, errors.invalid_request("Missing required parameter: refresh_token")
        grant = self._tokens.refresh.get(token)
        if grant is None:
            return 400, errors.REVOKED
        kind = self._grant_errors.get(token) or self._grant_errors.get(grant.user)
        if kind is not None:
            return 400, errors.INVALID_RAPT if kind == "invalid_rapt" else errors.REVOKED
        body = self._access_body(grant, self.clock())
        if self.rotate_refresh_tokens:
            body["refresh_token"] = self._tokens.rotate(grant)
        return 200, body

    def _access_body(self, grant: Grant, now: float) -> dict[str, Any]:
        lifetime = self.token_lifetime
        return {
            "access_token": self._tokens.issue_access(grant, lifetime, now),
            "expires_in": lifetime,
            "scope": grant.scope,
            "token_type": "Bearer",
        }

    def revoke(self, token: str | None) -> Reply:
        """The revoke endpoint: like Google, it ends the app's authorization for the token's whole account
        (every grant of that user, as removing the app under "Third-party apps with account access" does)."""
        with self._lock:
            grant = self._tokens.find_grant(token) if token else None
            if grant is None:
                return 400, {"error": "invalid_token", "error_description": "Token expired or revoked"}
            self._tokens.revoke_user(grant.user)
        return 200, {}

    def api_user(self, authorization: str | None) -> tuple[str | None, Reply | None]:
        """The Google user behind a Business Profile call's bearer token, or the error reply."""
        if not authorization or not authorization.startswith("Bearer "):
            return None, errors.UNAUTHENTICATED
        token = authorization[7:].strip()
        with self._lock:
            access = self._tokens.access.get(token)
            if access is None or access.expires_at <= self.clock():
                return None, errors.UNAUTHENTICATED
            if BUSINESS_MANAGE not in access.grant.scopes:
                return None, errors.INSUFFICIENT_SCOPES
            return access.grant.user, None

    def layout_for(self, email: str) -> Layout:
        """The user's accounts and locations under the current shape settings."""
        with self._lock:
            accounts, locations = self._shapes.get(email, (None, None))
            key = (
                email,
                self.accounts_per_user if accounts is None else accounts,
                self.locations_per_account if locations is None else locations,
            )
            layout = self._layouts.get(key)
            if layout is None:
                layout = self._layouts[key] = build_layout(*key)
            return layout

    def is_forbidden(self, name: str) -> bool:
        """Whether `name` ("locations/ID" or "accounts/ID") was forbidden by `forbid_location`."""
        with self._lock:
            return name in self._forbidden


def _redirect(uri: str, **params: str | None) -> str:
    parts = urlsplit(uri)
    extra = urlencode([(k, v) for k, v in params.items() if v is not None])
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
