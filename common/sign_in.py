"""Emailed sign-in links: signed over a random `jti`, 15 minutes, single-use; the row makes them single-use.

The API records a request (a `SignInLink` row) for a known email and publishes its row id; the notifier
signs the link and mails it, so no credential ever travels in a message body.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.errors import IntegrationsError
from common.models import SignInLink, User
from common.signing import BadSignature, SignatureExpired, Signer

PURPOSE = "sign-in"
LINK_TTL = dt.timedelta(minutes=15)
LINK_PATH = "/sign-in/link"
MAX_LINKS_PER_TTL = 5
# Where a link may send the browser after signing in: the Integrations page or a connect waiting for it.
_NEXT = re.compile(r"/(connect/google\?flow=[A-Za-z0-9_-]{16,128})?")


class SignInLinkError(IntegrationsError):
    """A sign-in link that cannot be used; `message` is written for the person who clicked it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Redeemed:
    user_id: int
    next_path: str


def make_signer(key_spec: str) -> Signer:
    return Signer(key_spec, PURPOSE)


def safe_next(value: str | None) -> str:
    """`value` when it is one of the few first-party places a link may lead to, else `/`."""
    return value if value and _NEXT.fullmatch(value) else "/"


def request_link(s: Session, email: str, *, next_path: str | None, now: dt.datetime) -> int | None:
    """Record a link for the user with `email`; its row id (for the notifier), or None for an unknown email
    (or one that asked for too many links lately)."""
    user_id = s.execute(select(User.id).where(User.email == email.strip().lower())).scalar_one_or_none()
    if user_id is None or recent_requests(s, user_id, now - LINK_TTL) >= MAX_LINKS_PER_TTL:
        return None
    row = SignInLink(
        jti=secrets.token_urlsafe(24),
        user_id=user_id,
        next_path=safe_next(next_path),
        created_at=now,
        expires_at=now + LINK_TTL,
    )
    s.add(row)
    s.flush()
    return row.id


def link_url(signer: Signer, base_url: str, row: SignInLink) -> str:
    """The link mailed for `row` (signed over its jti; expires with the row)."""
    ttl = max(1, int((row.expires_at - dt.datetime.now(dt.UTC)).total_seconds()))
    token = signer.sign({"jti": row.jti}, ttl)
    return f"{base_url.rstrip('/')}{LINK_PATH}?token={quote(token, safe='')}"


def check_link(s: Session, signer: Signer, token: str, now: dt.datetime, *, use: bool) -> Redeemed:
    """Verify a link (and mark it used when `use`); SignInLinkError says why it cannot be used."""
    try:
        jti = str(signer.verify(token).get("jti"))
    except SignatureExpired:
        raise SignInLinkError(_EXPIRED) from None
    except BadSignature:
        raise SignInLinkError(_INVALID) from None
    query = select(SignInLink).where(SignInLink.jti == jti)
    row = s.execute(query.with_for_update() if use else query).scalar_one_or_none()
    if row is None:
        raise SignInLinkError(_INVALID)
    if row.used_at is not None:
        raise SignInLinkError("This sign-in link has already been used. Each link works once: ask for a new one.")
    if row.expires_at <= now:
        raise SignInLinkError(_EXPIRED)
    if use:
        row.used_at = now
    return Redeemed(row.user_id, safe_next(row.next_path))


def recent_requests(s: Session, user_id: int, since: dt.datetime) -> int:
    """How many links `user_id` asked for since `since` (a cap keeps the sign-in form from flooding an inbox)."""
    count = s.execute(
        select(func.count())
        .select_from(SignInLink)
        .where(SignInLink.user_id == user_id, SignInLink.created_at >= since)
    ).scalar_one()
    return int(count)


_INVALID = "This sign-in link is not valid: it may have been cut off or altered. Ask for a new one."
_EXPIRED = "This sign-in link has expired (links work for 15 minutes). Ask for a new one."
