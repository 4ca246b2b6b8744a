"""Disconnecting an integration: erase its tokens and mark it disconnected, then revoke the grant at Google."""

from __future__ import annotations

from sqlalchemy import update

from common.bootstrap import Container
from common.connect import account_connected_elsewhere
from common.errors import CipherError
from common.locking import lock_integration
from common.logging import get_logger
from common.models import DISCONNECTED, Incident, Integration, utcnow
from common.token_service import close_incident
from services.api.queries import owned

log = get_logger("integrations.api.disconnect")


def disconnect(c: Container, user_id: int, integration_id: int) -> None:
    """Idempotent: a disconnected integration stays disconnected and nothing is revoked twice.

    The row is locked so a worker refreshing at the same moment cannot write new tokens back; the
    revoke runs after the commit so a slow Google never holds the lock. Revocation is best effort:
    the tokens are gone from our side either way.
    """
    with c.sessions() as s:
        owned(s, user_id, integration_id)  # before locking: someone else's row is never waited on
    with c.sessions.begin() as s:
        row = lock_integration(s, integration_id, c.settings.lock_timeout_seconds)
        grant = _stored_grant(c, row)
        was_active = row.status != DISCONNECTED
        row.access_token_enc = None
        row.refresh_token_enc = None
        row.token_expires_at = None
        row.status = DISCONNECTED
        row.needs_reauth = False
        now = utcnow()
        close_incident(s, row, now)
        # No IncidentClosed event, and every closure whose "it works again" is still owed (this one, or a
        # reconnect's not emailed yet) marked as settled, so neither a late event nor the outbox sweep
        # sends one: it would be false for an integration the user just disconnected.
        s.flush()
        s.execute(
            update(Incident)
            .where(
                Incident.integration_id == integration_id,
                Incident.closed_at.is_not(None),
                Incident.reconnected_notified_at.is_(None),
            )
            .values(reconnected_notified_at=now)
        )
        platform, account = row.platform, row.external_account_id
        shared = account_connected_elsewhere(s, account, integration_id)
    # A revocation ends the app's access for the whole Google account: not while another integration uses it.
    revoked = c.oauth.revoke(grant) if grant and not shared else False
    log.info(
        "integration.disconnected",
        integration_id=integration_id,
        platform=platform,
        was_active=was_active,
        revoked_at_provider=revoked,
        account_connected_elsewhere=shared,
    )


def _stored_grant(c: Container, row: Integration) -> str | None:
    # Revoking either token revokes the whole grant at Google; prefer the long-lived one.
    for field, value in (("refresh_token", row.refresh_token_enc), ("access_token", row.access_token_enc)):
        if value:
            try:
                return c.cipher.decrypt(value, integration_id=row.id, field=field)
            except CipherError:
                log.warning("integration.disconnect.undecryptable", integration_id=row.id, field=field)
    return None
