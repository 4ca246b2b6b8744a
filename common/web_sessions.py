"""Browser sessions: a random id in an HttpOnly cookie, stored only as its SHA-256, revocable, with a CSRF token."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from common.models import WebSession

SESSION_TTL = dt.timedelta(days=14)
MAX_SESSION_ID_LENGTH = 128


@dataclass(frozen=True)
class SignedIn:
    """A live session: whose it is, and the CSRF token its forms carry."""

    session_hash: str
    user_id: int | None
    operator: bool
    csrf_token: str


def session_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def open_session(s: Session, *, user_id: int | None, operator: bool, now: dt.datetime) -> str:
    """Store a new session and return its raw id (for the cookie only); every sign-in gets a fresh one."""
    raw = secrets.token_urlsafe(32)
    s.add(
        WebSession(
            id_hash=session_hash(raw),
            user_id=user_id,
            operator=operator,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    return raw


def find_session(s: Session, raw: str, now: dt.datetime) -> SignedIn | None:
    """The live session a cookie names, or None (unknown, expired or signed out)."""
    if not raw or len(raw) > MAX_SESSION_ID_LENGTH:
        return None
    row = s.get(WebSession, session_hash(raw))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return SignedIn(row.id_hash, row.user_id, bool(row.operator), row.csrf_token)


def revoke_session(s: Session, hashed: str, now: dt.datetime) -> None:
    s.execute(update(WebSession).where(WebSession.id_hash == hashed).values(revoked_at=now))


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())
