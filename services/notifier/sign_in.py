"""The sign-in email: one link per request row, signed here so no credential travels in a message."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from html import escape

from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.logging import get_logger
from common.models import SignInLink, User, utcnow
from common.sign_in import link_url, make_signer
from services.notifier.emails import _message, _page
from services.notifier.mailer import Mailer, MailRejected

log = get_logger("integrations.notifier.sign_in")


def sign_in_email(to: str, *, link: str, expires: dt.datetime, row_id: int, mail_from: str) -> EmailMessage:
    """The email with the one sign-in link."""
    until = f"{expires:%H:%M} UTC"
    text = (
        "Hello,\n\nSomeone (we hope you) asked to sign in to integrations with this address.\n"
        f"Open this link to sign in (it works once, until {until}):\n\n{link}\n\n"
        "If you did not ask for it, ignore this email: nobody can sign in without the link.\n\n-- integrations"
    )
    html = _page(
        "<p>Hello,</p><p>Someone (we hope you) asked to sign in to integrations with this address.</p>"
        f'<p><a href="{escape(link)}">Sign in to integrations</a></p>'
        f"<p>The link works once, until {escape(until)}. If you did not ask for it, ignore this email: "
        "nobody can sign in without the link.</p>"
    )
    domain = mail_from.rpartition("@")[2].strip("> ") or "integrations.local"
    return _message(to, "Your sign-in link", text, html, f"<sign-in-{row_id}@{domain}>", mail_from)


@dataclass
class SignInMailer:
    """Sends the email for one sign-in request once; a used, expired or already sent request sends nothing."""

    sessions: sessionmaker[Session]
    settings: Settings
    mailer: Mailer
    clock: Callable[[], dt.datetime] = field(default=utcnow)

    def send(self, row_id: int) -> str:
        signer = make_signer(self.settings.token_encryption_keys.reveal())
        # The row stays locked while the mail server takes the message, so a redelivery waits and then skips.
        with self.sessions.begin() as s:
            row = s.get(SignInLink, row_id, with_for_update=True)
            if row is None or row.sent_at is not None or row.used_at is not None or row.expires_at <= self.clock():
                log.info("notify.skipped", sign_in_id=row_id, notify_event="sign_in")
                return "skipped"
            user = s.get(User, row.user_id)
            if user is None:
                return "skipped"
            link = link_url(signer, self.settings.public_base_url, row)
            email = sign_in_email(
                user.email, link=link, expires=row.expires_at, row_id=row.id, mail_from=self.settings.mail_from
            )
            outcome = "sent"
            try:
                self.mailer.send(email)
            except MailRejected as exc:
                log.error("notify.rejected", sign_in_id=row_id, notify_event="sign_in", message=str(exc))
                outcome = "rejected"
            row.sent_at = self.clock()
        log.info(f"notify.{outcome}", sign_in_id=row_id, notify_event="sign_in", user_id=row.user_id)
        return outcome
