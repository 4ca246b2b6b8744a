"""Users and their API keys: random, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from email.errors import HeaderParseError
from email.headerregistry import Address

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.errors import IntegrationsError, InvalidEmail
from common.models import Integration, User

KEY_PREFIX = "ik_"
MAX_EMAIL_LENGTH = 254


class UserExists(IntegrationsError):
    """A user with that email exists already."""


class UnknownUser(IntegrationsError):
    """No user has that email."""


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_digest(api_key: str) -> str | None:
    """The stored form (SHA-256 hex) of a well-formed API key; None for a malformed one, at the same cost."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        # Hash anyway so a malformed key costs the same as a wrong one.
        hmac.compare_digest(hash_key(api_key), hash_key(KEY_PREFIX))
        return None
    return hash_key(api_key)


def create_user(sessions: sessionmaker[Session], email: str) -> tuple[int, str]:
    """Create a user and return (id, api_key); the key is not stored and cannot be shown again."""
    email = plain_mailbox(email)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with sessions.begin() as s:
            user = User(email=email, api_key_hash=hash_key(api_key))
            s.add(user)
            s.flush()
            return user.id, api_key
    except IntegrityError:
        raise UserExists(f"a user with email {email} exists already") from None


def plain_mailbox(raw: str) -> str:
    """`raw` as one plain mailbox, `name@domain` in lower case; InvalidEmail for anything else.

    The address goes into the To header of emails carrying a reconnect link: a comma, a display name, a
    comment or a quoted local part could make a mail server deliver to a second, chosen recipient.
    """
    email = raw.strip().lower()
    shown = repr(email[:80])
    refused = InvalidEmail(f"{shown} is not one email address (name@domain, without a name, comma or quotes)")
    if not email or len(email) > MAX_EMAIL_LENGTH or '"' in email or not email.isprintable():
        raise refused
    try:
        address = Address(addr_spec=email)
    except (ValueError, IndexError, HeaderParseError):  # the parser's defects are ValueErrors; IndexError: "a@"
        raise refused from None
    if address.addr_spec != email or not address.username or not address.domain or address.domain.startswith("["):
        raise refused  # a comment was dropped, or a domain literal
    return email


def authenticate(session: Session, api_key: str) -> User | None:
    """The user owning `api_key`, or None; the key is compared only as a hash, in constant time."""
    digest = key_digest(api_key)
    if digest is None:
        return None
    user = session.execute(select(User).where(User.api_key_hash == digest)).scalar_one_or_none()
    if user is None or not hmac.compare_digest(user.api_key_hash, digest):
        return None
    return user


def new_key(sessions: sessionmaker[Session], email: str) -> tuple[int, str]:
    """Give the user a new API key and return (id, key); the old key stops working at once."""
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as s:
        user = s.execute(select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
        if user is None:
            raise UnknownUser(f"no user has email {email.strip().lower()}")
        user.api_key_hash = hash_key(api_key)
        return user.id, api_key


def list_users(sessions: sessionmaker[Session]) -> list[dict[str, object]]:
    """Every user with the number of their integrations, oldest first (never a key or its hash)."""
    with sessions() as s:
        rows = s.execute(
            select(User.id, User.email, User.created_at, func.count(Integration.id))
            .outerjoin(Integration, Integration.user_id == User.id)
            .group_by(User.id, User.email, User.created_at)
            .order_by(User.id)
        ).all()
    return [
        {"id": uid, "email": email, "integrations": n, "created_at": created.isoformat()}
        for uid, email, created, n in rows
    ]
