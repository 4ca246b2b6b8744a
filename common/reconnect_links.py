"""Reconnect links in re-auth emails: signed, expiring after 7 days, single-use, bound to one integration.

The signature (common.signing) proves the link is ours and unaltered and carries its expiry; a
`ReconnectToken` row per link (its `jti`) makes it single-use and ties it to the integration and incident.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy.orm import Session

from common.errors import IntegrationsError
from common.models import ACTIVE, Integration, ReconnectToken
from common.signing import BadSignature, SignatureExpired, Signer

PURPOSE = "reconnect"
LINK_TTL_SECONDS = 7 * 24 * 3600


class ReconnectLinkError(IntegrationsError):
    """A reconnect link that cannot be used; `message` is written for the person who clicked it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LinkNotNeeded(ReconnectLinkError):
    """The integration works (again): there is nothing to reconnect."""


@dataclass(frozen=True)
class Redeemed:
    """A link that was just marked used: start the OAuth flow for this integration."""

    integration_id: int
    user_id: int
    incident_id: int | None
    google_email: str | None


def make_signer(key_spec: str) -> Signer:
    """The signer for reconnect links, from TOKEN_ENCRYPTION_KEYS (no extra secret to manage)."""
    return Signer(key_spec, PURPOSE)


def reconnect_path(integration_id: int) -> str:
    return f"/integrations/{integration_id}/reconnect"


def issue_link(
    session: Session,
    signer: Signer,
    base_url: str,
    *,
    integration_id: int,
    incident_id: int | None,
    now: dt.datetime,
    ttl_seconds: int = LINK_TTL_SECONDS,
) -> str:
    """A new link, recorded in `session` (the caller commits before the link leaves the building)."""
    jti = secrets.token_urlsafe(24)
    session.add(
        ReconnectToken(
            jti=jti,
            integration_id=integration_id,
            incident_id=incident_id,
            expires_at=now + dt.timedelta(seconds=ttl_seconds),
        )
    )
    token = signer.sign({"jti": jti, "iid": integration_id, "inc": incident_id}, ttl_seconds)
    return f"{base_url.rstrip('/')}{reconnect_path(integration_id)}?token={quote(token, safe='')}"


def check_link(
    session: Session, signer: Signer, token: str, *, integration_id: int, now: dt.datetime, lock: bool = False
) -> tuple[ReconnectToken, Integration]:
    """The link's row and its integration when the link can be used now; ReconnectLinkError says why not.

    Nothing is changed: showing the link's page (GET, HEAD) checks it, only `redeem_link` uses it up.
    """
    try:
        body = signer.verify(token)
    except SignatureExpired:
        raise ReconnectLinkError(_EXPIRED) from None
    except BadSignature:
        raise ReconnectLinkError(_INVALID) from None
    if body.get("iid") != integration_id:
        raise ReconnectLinkError("This link belongs to a different connection. Use the link from the right email.")
    row = session.get(ReconnectToken, str(body.get("jti")), with_for_update=lock)
    if row is None or row.integration_id != integration_id:
        raise ReconnectLinkError(_INVALID)
    if row.used_at is not None:
        raise ReconnectLinkError(
            "This link has already been used. Each reconnect link works once; "
            "reconnect from the integrations page of the app instead."
        )
    if row.expires_at <= now:
        raise ReconnectLinkError(_EXPIRED)
    integration = session.get(Integration, integration_id)
    if integration is None or integration.status != ACTIVE:
        raise ReconnectLinkError("This connection has been removed, so there is nothing to reconnect.")
    if not integration.needs_reauth:
        raise LinkNotNeeded(f"{public_name(integration)} is connected and working: nothing to do.")
    return row, integration


def redeem_link(session: Session, signer: Signer, token: str, *, integration_id: int, now: dt.datetime) -> Redeemed:
    """Check the link for `integration_id` and mark it used in `session`; ReconnectLinkError says why not."""
    row, integration = check_link(session, signer, token, integration_id=integration_id, now=now, lock=True)
    row.used_at = now
    return Redeemed(integration.id, integration.user_id, row.incident_id, integration.external_account_email)


def public_name(integration: Integration) -> str:
    """The integration's name for a page anyone holding the link may fetch: its Google account's email masked."""
    name = integration.display_name or "This connection"
    email = integration.external_account_email
    if email and "@" in email:
        local, _, domain = email.rpartition("@")
        masked = f"{local[:1]}…@{domain}"
        name = re.sub(re.escape(email), lambda _: masked, name, flags=re.IGNORECASE)
    return name


_INVALID = (
    "This reconnect link is not valid: it may have been cut off or altered. "
    "Open the link from the email again, or reconnect from the integrations page of the app."
)
_EXPIRED = (
    "This reconnect link has expired (links work for 7 days). Reconnect from the integrations page of the app instead."
)
