"""The error hierarchy: the class of an error decides retry, re-auth or operator alert."""

from __future__ import annotations


class IntegrationsError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(IntegrationsError):
    """A setting is missing or malformed; the service cannot start."""


class CipherError(IntegrationsError):
    """A stored token cannot be decrypted (unknown key id, wrong key, tampered or moved ciphertext)."""


class IntegrationNotFound(IntegrationsError):
    """No integration has that id."""


class IntegrationInactive(IntegrationsError):
    """The integration is disconnected; nothing is refreshed or synced for it."""


class AccountMismatch(IntegrationsError):
    """A reconnect was completed with a different Google account than the integration's own."""


class LockTimeout(IntegrationsError):
    """Another worker held the integration's lock for too long; retry later."""


class ProviderError(IntegrationsError):
    """A failure talking to the OAuth provider or its APIs.

    `reason` is a short machine code (`invalid_grant`, `http_503`, ...); `message` is safe to show a
    user and never holds a secret.
    """

    kind: str = "provider"

    def __init__(self, reason: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class ReauthRequired(ProviderError):
    """Only the user can fix this: the grant is gone or lacks a permission. Never retried."""

    kind = "reauth_required"


class ProviderConfigError(ProviderError):
    """Our OAuth client is misconfigured (invalid, unauthorized or deleted client). Operators must act."""

    kind = "provider_config"


class TransientProviderError(ProviderError):
    """A network error, timeout, 408, 429 or 5xx: retried with backoff, state unchanged."""

    kind = "transient"

    def __init__(
        self, reason: str, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, message, status=status)
        self.retry_after = retry_after


class AccessTokenRejected(ProviderError):
    """A Business Profile call answered 401: the access token must be refreshed and the call retried once."""

    kind = "transient"


class InvalidEmail(IntegrationsError, ValueError):
    """Not exactly one plain mailbox (`name@domain`: no list, display name, comment or quoted part)."""


class QuotaExceeded(TransientProviderError):
    """Google's per-minute quota is used up (429 RESOURCE_EXHAUSTED), or our governor has no slot soon enough.

    Pacing, not failure: the work is deferred (never marked, never an incident, never a spent retry).
    `api` names the quota (`performance`, `token`, ...).
    """

    def __init__(
        self, api: str, reason: str, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, message, status=status, retry_after=retry_after)
        self.api = api
