"""Authorization codes, grants, access and refresh tokens. Not thread-safe: FakeGoogle holds the lock."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field

from services.fake_google.data import user_sub

CODE_LIFETIME = 600.0
# Older access tokens of a grant stay valid (as at Google), but only this many, so benchmarks stay bounded.
_ACCESS_TOKENS_PER_GRANT = 64


@dataclass(slots=True)
class Code:
    """A single-use authorization code and what the consent remembered."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    challenge: str | None
    user: str
    offline: bool
    expires_at: float


@dataclass(slots=True, eq=False)
class Grant:
    """One consent of one user: a refresh token (if offline) and its access tokens."""

    user: str
    client_id: str
    scopes: frozenset[str]
    scope: str
    refresh_token: str | None = None
    access_tokens: deque[str] = field(default_factory=deque)


@dataclass(slots=True)
class Access:
    """An access token's grant and expiry (epoch seconds)."""

    grant: Grant
    expires_at: float


def s256(verifier: str) -> str:
    """PKCE S256 challenge of `verifier`: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def id_token(client_id: str, user: str, now: float, lifetime: int) -> str:
    """An unsigned-but-well-formed Google-style ID token (JWT) for `user`."""
    header = {"alg": "RS256", "kid": "fake", "typ": "JWT"}
    payload = {
        "iss": "https://accounts.google.com",
        "azp": client_id,
        "aud": client_id,
        "sub": user_sub(user),
        "email": user,
        "email_verified": True,
        "iat": int(now),
        "exp": int(now) + lifetime,
    }
    parts = (json.dumps(header).encode(), json.dumps(payload).encode(), secrets.token_bytes(32))
    return ".".join(_b64(p) for p in parts)


class TokenStore:
    """Every code, grant and token the fake knows."""

    def __init__(self) -> None:
        self.codes: dict[str, Code] = {}
        self.refresh: dict[str, Grant] = {}
        self.access: dict[str, Access] = {}
        self.by_user: dict[str, list[Grant]] = {}
        self.issued: set[str] = set()
        self.rt_owner: dict[str, str] = {}

    def new_code(self, code: Code) -> str:
        value = "4/0" + secrets.token_urlsafe(32)
        self.codes[value] = code
        return value

    def new_grant(self, code: Code) -> Grant:
        grant = Grant(code.user, code.client_id, frozenset(code.scopes), " ".join(code.scopes))
        if code.offline:
            self._set_refresh_token(grant)
        self.by_user.setdefault(code.user, []).append(grant)
        return grant

    def issue_access(self, grant: Grant, lifetime: int, now: float) -> str:
        token = "ya29." + secrets.token_urlsafe(48)
        self.issued.add(token)
        self.access[token] = Access(grant, now + lifetime)
        grant.access_tokens.append(token)
        if len(grant.access_tokens) > _ACCESS_TOKENS_PER_GRANT:
            self.access.pop(grant.access_tokens.popleft(), None)
        return token

    def rotate(self, grant: Grant) -> str:
        if grant.refresh_token is not None:
            self.refresh.pop(grant.refresh_token, None)
        return self._set_refresh_token(grant)

    def _set_refresh_token(self, grant: Grant) -> str:
        token = "1//0" + secrets.token_urlsafe(64)
        grant.refresh_token = token
        self.refresh[token] = grant
        self.issued.add(token)
        self.rt_owner[token] = grant.user
        return token

    def find_grant(self, token: str) -> Grant | None:
        grant = self.refresh.get(token)
        if grant is not None:
            return grant
        access = self.access.get(token)
        return access.grant if access is not None else None

    def revoke(self, grant: Grant) -> None:
        if grant.refresh_token is not None:
            self.refresh.pop(grant.refresh_token, None)
        for token in grant.access_tokens:
            self.access.pop(token, None)
        grant.access_tokens.clear()
        grants = self.by_user.get(grant.user)
        if grants is not None and grant in grants:
            grants.remove(grant)

    def revoke_user(self, user: str) -> int:
        grants = list(self.by_user.get(user, ()))
        for grant in grants:
            self.revoke(grant)
        return len(grants)

    def expire_access(self, user: str | None, now: float) -> None:
        for access in self.access.values():
            if user is None or access.grant.user == user:
                access.expires_at = min(access.expires_at, now - 1)
