"""Once-per-incident email delivery: lock the incident, claim, send, record.

Each email of an incident is sent under a per-incident lock (a transaction-scoped PostgreSQL advisory
lock, held on its own connection for the length of the send), so concurrent deliveries of the same
event (a redelivery, the scheduler's outbox sweep) run one after the other and the later ones see
`notified_at` set and send nothing. Inside the lock:

1. claim: re-read the incident; stop if already notified or closed; count the attempt and record the
   reconnect link's single-use row; commit, so the link in the email always exists;
2. send over SMTP (a failure raises, and Dramatiq retries with backoff);
3. record `notified_at` (or `reconnected_notified_at`) and commit.

The email is lost in no case. The residual window: a crash after the mail server accepted the message
and before step 3 committed sends it again on redelivery, with the same deterministic Message-ID
(`<incident-ID.reauth@domain>`) so mail clients can fold the pair. We chose that over recording first,
whose window loses the email instead: an unseen re-auth email means silent data gaps.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.errors import InvalidEmail, LockTimeout
from common.logging import get_logger
from common.metrics import record_email
from common.models import ACTIVE, Incident, Integration, User, utcnow
from common.reconnect_links import LINK_TTL_SECONDS, issue_link, make_signer
from common.users import plain_mailbox
from services.notifier.emails import Recipient, ops_email, reauth_email, reconnected_email
from services.notifier.mailer import MailDeliveryError, Mailer, MailRejected

REAUTH = "reauth_required"
PROVIDER_CONFIG = "provider_config"
OPS_ALERT_EVERY = dt.timedelta(hours=1)
_LOCK_NAMESPACE = 0x4E4F5449  # "NOTI": keeps these advisory keys apart from any other use
_OPS_LOCK_NAMESPACE = 0x4F505341  # "OPSA": operators' alerts, by kind and reason
_LOCAL_LOCK = threading.Lock()  # SQLite (standalone): one process, so a process lock is enough

log = get_logger("integrations.notifier")


@dataclass
class Notifier:
    """Turns incident events into at most one email each (see the module docstring for the protocol)."""

    sessions: sessionmaker[Session]
    engine: Engine
    settings: Settings
    mailer: Mailer
    clock: Callable[[], dt.datetime] = field(default=utcnow)
    lock_timeout_seconds: float = 60.0

    def incident_opened(self, incident_id: int) -> str:
        """Send the re-auth email (or the operators' alert) for the incident once; returns the outcome."""
        return self._deliver(incident_id, "opened", self._claim_opened, "notified_at")

    def incident_closed(self, incident_id: int) -> str:
        """Send the "reconnected" confirmation once, when the owner was told about the incident."""
        return self._deliver(incident_id, "closed", self._claim_closed, "reconnected_notified_at")

    def _deliver(
        self, incident_id: int, event: str, claim: Callable[[Session, Incident], EmailMessage | str], column: str
    ) -> str:
        started = time.perf_counter()
        with self._incident_lock(incident_id):
            with self.sessions.begin() as s:
                incident = _read_incident(s, incident_id)
                draft = "missing" if incident is None else claim(s, incident)
                attempt = incident.notify_attempts if incident is not None else 0
            if isinstance(draft, str):
                log.info("notify.skipped", incident_id=incident_id, notify_event=event, reason=draft)
                return draft
            outcome = "sent"
            try:
                if _kind(draft) in ("reauth", "reconnected"):  # to the user; OPS_EMAIL may list operators
                    _check_owner_address(draft)
                self.mailer.send(draft)
            except MailDeliveryError as exc:
                record_email(_kind(draft), "failed")
                log.warning(
                    "notify.failed", incident_id=incident_id, notify_event=event, attempt=attempt, reason=str(exc)
                )
                raise
            except MailRejected as exc:
                # Retrying cannot help; record it so neither retries nor the sweep resend forever.
                log.error("notify.rejected", incident_id=incident_id, notify_event=event, message=str(exc))
                outcome = "rejected"
            record_email(_kind(draft), "sent" if outcome == "sent" else "failed")
            with self.sessions.begin() as s:
                s.execute(update(Incident).where(Incident.id == incident_id).values({column: self.clock()}))
        log.info(
            f"notify.{outcome}",
            incident_id=incident_id,
            notify_event=event,
            email=_kind(draft),
            attempt=attempt,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return outcome

    def _claim_opened(self, s: Session, incident: Incident) -> EmailMessage | str:
        if incident.notified_at is not None:
            return "already_notified"
        if incident.closed_at is not None:
            return "closed"
        integration, owner = _integration_and_owner(s, incident)
        if integration is None or owner is None or integration.status != ACTIVE:
            return "integration_gone"
        to = Recipient(owner.email, integration.id, integration.display_name, integration.external_account_email)
        now = self.clock()
        if incident.kind == REAUTH:
            incident.notify_attempts += 1
            link = issue_link(
                s,
                make_signer(self.settings.token_encryption_keys.reveal()),
                self.settings.public_base_url,
                integration_id=integration.id,
                incident_id=incident.id,
                now=now,
            )
            expires = now + dt.timedelta(seconds=LINK_TTL_SECONDS)
            return reauth_email(
                to,
                incident_id=incident.id,
                reason=incident.reason,
                link=link,
                link_expires=expires,
                mail_from=self.settings.mail_from,
            )
        if incident.kind == PROVIDER_CONFIG:
            # A broken OAuth client fails every integration at once, an incident each: the operators get
            # one email per reason an hour, not one per integration (a million, on a large fleet).
            emailed_lately = self.settings.ops_email and _ops_alert_claimed_since(s, incident, now - OPS_ALERT_EVERY)
            if not self.settings.ops_email or emailed_lately:
                log.error(
                    "incident.operator_alert",
                    incident_id=incident.id,
                    integration_id=integration.id,
                    reason=incident.reason,
                    message=incident.message,
                    hint="an email for this reason went out within the hour"
                    if emailed_lately
                    else "set OPS_EMAIL to receive these by email",
                )
                incident.notified_at = now
                return "ops_alerted_lately" if emailed_lately else "logged"
            incident.notify_attempts += 1
            return ops_email(
                self.settings.ops_email,
                to,
                owner=owner.email,
                incident_id=incident.id,
                reason=incident.reason,
                detail=incident.message,
                mail_from=self.settings.mail_from,
            )
        return "not_notifiable"

    def _claim_closed(self, s: Session, incident: Incident) -> EmailMessage | str:
        if incident.reconnected_notified_at is not None:
            return "already_notified"
        if incident.closed_at is None:
            return "still_open"
        if incident.kind != REAUTH or incident.notified_at is None:
            return "owner_never_told"
        integration, owner = _integration_and_owner(s, incident)
        if integration is None or owner is None:
            return "integration_gone"
        to = Recipient(owner.email, integration.id, integration.display_name, integration.external_account_email)
        return reconnected_email(to, incident_id=incident.id, mail_from=self.settings.mail_from)

    @contextmanager
    def _incident_lock(self, incident_id: int) -> Iterator[None]:
        if self.engine.dialect.name != "postgresql":
            with _LOCAL_LOCK:
                yield
            return
        with self.engine.connect() as conn, conn.begin():
            conn.execute(text(f"SET LOCAL lock_timeout = {max(1, int(self.lock_timeout_seconds * 1000))}"))
            try:
                conn.execute(select(func.pg_advisory_xact_lock(_LOCK_NAMESPACE, incident_id % 2**31)))
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) == "55P03":
                    raise LockTimeout(f"incident {incident_id} is being notified by another worker") from None
                raise
            yield


def _ops_alert_claimed_since(s: Session, incident: Incident, since: dt.datetime) -> bool:
    """Whether an operators' email was claimed for another incident of the same kind and reason opened since
    `since`. Claims of one reason are serialised (a transaction-scoped advisory lock on PostgreSQL; the
    notifier's process lock on SQLite), so of incidents claimed at the same moment exactly one emails."""
    if s.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"{incident.kind}:{incident.reason}".encode()) % 2**31
        s.execute(select(func.pg_advisory_xact_lock(_OPS_LOCK_NAMESPACE, key)))
    other = s.scalar(
        select(Incident.id)
        .where(
            Incident.kind == incident.kind,
            Incident.reason == incident.reason,
            Incident.id != incident.id,
            Incident.opened_at >= since,
            Incident.notify_attempts > 0,  # claimed for an email: the "logged" path claims none
        )
        .limit(1)
    )
    return other is not None


def _read_incident(s: Session, incident_id: int) -> Incident | None:
    incident = s.get(Incident, incident_id)
    if incident is None:
        return None
    # The integration's row first, then the incident, as the refresh and the OAuth callback take them
    # when they close it: the claim's writes (the link's foreign key) the other way round deadlock.
    s.execute(select(Integration.id).where(Integration.id == incident.integration_id).with_for_update(key_share=True))
    s.refresh(incident)  # as committed by whoever held the integration's lock
    return incident


def _integration_and_owner(s: Session, incident: Incident) -> tuple[Integration | None, User | None]:
    integration = s.get(Integration, incident.integration_id)
    owner = s.get(User, integration.user_id) if integration is not None else None
    return integration, owner


def _check_owner_address(message: EmailMessage) -> None:
    """MailRejected unless a user's email goes to one plain mailbox: a row stored before `users create` checked
    addresses could hold a list, which would send the reconnect link to a second, chosen recipient."""
    try:
        plain_mailbox(str(message["To"] or ""))
    except InvalidEmail:
        raise MailRejected("the user's stored email is not one email address; fix it in the users table") from None


def _kind(message: EmailMessage) -> str:
    return str(message["Message-ID"]).split(".", 1)[1].split("@", 1)[0]
