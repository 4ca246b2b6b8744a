"""Completing an OAuth connection: code exchange, scope check, encrypted store, one row per Google account."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.cipher import TokenCipher
from common.errors import AccountMismatch, IntegrationNotFound
from common.events import Event
from common.google_oauth import GoogleOAuthClient
from common.models import ACTIVE, GOOGLE, Integration
from common.token_service import close_incident, store_grant


@dataclass(frozen=True)
class Connected:
    integration_id: int
    created: bool
    reconnected: bool
    events: list[Event]


def complete_connection(
    session: Session,
    oauth: GoogleOAuthClient,
    cipher: TokenCipher,
    *,
    user_id: int,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    now: dt.datetime,
    integration_id: int | None = None,
) -> Connected:
    """Exchange the code and store the grant in `session`'s transaction; the caller commits, then publishes.

    Raises ReauthRequired('missing_scope') when the user unticked the Business Profile permission.
    A reconnect (`integration_id`) updates that integration; connecting a Google account the user
    has connected before updates that one instead of adding a duplicate; without an id_token (no
    account identity) a connection always adds a new integration.
    """
    grant = oauth.exchange_code(code=code, code_verifier=code_verifier, redirect_uri=redirect_uri)
    claims = grant.id_token_claims
    subject = str(claims.get("sub") or "") or None
    email = str(claims.get("email") or "") or None
    row: Integration | None
    if integration_id is not None:
        row = session.get(Integration, integration_id, with_for_update=True)
        if row is None or row.user_id != user_id:
            raise IntegrationNotFound(f"integration {integration_id} does not exist")
        if row.external_account_id and subject and subject != row.external_account_id:
            # The new grant is of no use to this integration: hand it back to Google at once, unless that
            # account is connected elsewhere (a revocation would end the app's access for it there too).
            if not account_connected_elsewhere(session, subject, row.id):
                oauth.revoke(grant.refresh_token or grant.access_token)
            raise AccountMismatch(
                f"signed in with a different Google account than the one this connection uses "
                f"({row.external_account_email or 'its original account'})"
            )
    elif subject is None:
        # No id_token, so no way to know the account: a match on NULL would hand this grant to
        # whichever account was connected that way before.
        row = None
    else:
        row = session.execute(
            select(Integration)
            .where(
                Integration.user_id == user_id,
                Integration.platform == GOOGLE,
                Integration.external_account_id == subject,
            )
            .with_for_update()
        ).scalar_one_or_none()
    created = row is None
    was_broken = bool(row and (row.needs_reauth or row.status != ACTIVE or row.error_kind))
    if row is None:
        row = Integration(user_id=user_id, platform=GOOGLE, external_account_id=subject, created_at=now)
        session.add(row)
        session.flush()
    row.status = ACTIVE
    row.external_account_id = subject or row.external_account_id
    row.external_account_email = email or row.external_account_email
    row.display_name = row.display_name or f"Google Business Profile ({email or 'account'})"
    store_grant(row, grant, cipher, now)
    events = close_incident(session, row, now)
    return Connected(row.id, created, not created and was_broken, events)


def account_connected_elsewhere(session: Session, external_account_id: str | None, integration_id: int) -> bool:
    """Whether an active integration other than `integration_id` uses that Google account.

    Revoking a token at Google revokes the app's authorization for the whole Google account, not just that
    token's grant: every refresh token of the account stops working. Before revoking, make sure no other
    integration (this user's or another's) depends on the account.
    """
    if not external_account_id:
        return False
    other = session.scalar(
        select(Integration.id)
        .where(
            Integration.platform == GOOGLE,
            Integration.external_account_id == external_account_id,
            Integration.status == ACTIVE,
            Integration.id != integration_id,
        )
        .limit(1)
    )
    return other is not None
