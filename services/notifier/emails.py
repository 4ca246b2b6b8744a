"""The notifier's emails, plain text and HTML: re-auth needed, reconnected, and the operators' alert."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

from common.reauth_reasons import FALLBACK as _FALLBACK
from common.reauth_reasons import REASONS

# RFC 5322's hard limit instead of the advisory 78: the reconnect link stays on one readable line
# (no quoted-printable soft breaks), and long subjects are not folded in odd places.
_POLICY = policy.default.clone(max_line_length=998)


@dataclass(frozen=True)
class Recipient:
    """Who the email is about and to: the integration's owner and the Google account it connects."""

    email: str
    integration_id: int
    display_name: str
    google_email: str | None


def message_id(incident_id: int, what: str, mail_from: str) -> str:
    """A deterministic Message-ID per incident and email: resends after a crash carry the same id."""
    domain = mail_from.rpartition("@")[2].strip("> ") or "integrations.local"
    return f"<incident-{incident_id}.{what}@{domain}>"


def reauth_email(
    to: Recipient, *, incident_id: int, reason: str, link: str, link_expires: dt.datetime, mail_from: str
) -> EmailMessage:
    """Tell the owner their integration needs them, why, and give the one-click reconnect link."""
    name, account = to.display_name or "Google Business Profile", to.google_email or "your Google account"
    intro, causes = REASONS.get(reason, _FALLBACK)
    expires = f"{link_expires:%d %B %Y, %H:%M} UTC"
    text = "\n".join(
        [
            "Hello,",
            "",
            f'Your connection "{name}" (Google account {account}) has stopped syncing, and only you can fix it.',
            "",
            f"What happened: {intro}",
            *(f"  - {cause}" for cause in causes),
            "",
            f"To reconnect, open this link and sign in with {account}:",
            "",
            link,
            "",
            f"The link works once and until {expires}. After that, reconnect from the integrations page of the app.",
            "Until you reconnect, no new data is synced for this connection. Nothing else is affected.",
            "",
            "-- integrations",
        ]
    )
    items = "".join(f"<li>{escape(cause)}</li>" for cause in causes)
    html = _page(
        f"<p>Hello,</p><p>Your connection <strong>{escape(name)}</strong> (Google account {escape(account)}) "
        "has stopped syncing, and only you can fix it.</p>"
        f"<p><strong>What happened:</strong> {escape(intro)}</p>{f'<ul>{items}</ul>' if items else ''}"
        f'<p><a href="{escape(link)}" style="{_BUTTON}">Reconnect {escape(name)}</a></p>'
        f"<p>Sign in with {escape(account)}. The link works once and until {escape(expires)}; after that, "
        "reconnect from the integrations page of the app.</p>"
        "<p>Until you reconnect, no new data is synced for this connection. Nothing else is affected.</p>"
    )
    subject = f"Action needed: reconnect {name}"
    return _message(to.email, subject, text, html, message_id(incident_id, "reauth", mail_from), mail_from)


def reconnected_email(to: Recipient, *, incident_id: int, mail_from: str) -> EmailMessage:
    """A short confirmation that the connection works again."""
    name, account = to.display_name or "Google Business Profile", to.google_email or "your Google account"
    text = (
        f'Good news: your connection "{name}" (Google account {account}) works again.\n'
        "Syncing has resumed; there is nothing else to do.\n\n-- integrations"
    )
    html = _page(
        f"<p>Good news: your connection <strong>{escape(name)}</strong> (Google account {escape(account)}) "
        "works again.</p><p>Syncing has resumed; there is nothing else to do.</p>"
    )
    subject = f"Reconnected: {name}"
    return _message(to.email, subject, text, html, message_id(incident_id, "reconnected", mail_from), mail_from)


def ops_email(
    ops: str, about: Recipient, *, owner: str, incident_id: int, reason: str, detail: str, mail_from: str
) -> EmailMessage:
    """Operators: Google rejected our OAuth client; users cannot fix this."""
    text = "\n".join(
        [
            f"Google rejected our OAuth client ({reason}) while refreshing integration {about.integration_id}",
            f'("{about.display_name}", owner {owner}, Google account {about.google_email or "unknown"}).',
            "",
            f"Detail: {detail}",
            "",
            "Check GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET and the OAuth client in the Google Cloud console.",
            "Users cannot fix this and were not emailed. The integration stays in error until the client works",
            "and its token is refreshed again. A broken client usually fails every integration: for an hour,",
            "the others failing the same way are only logged (incident.operator_alert); `integrations health`",
            "lists them all.",
            "",
            f"Incident {incident_id}.",
        ]
    )
    html = _page("".join(f"<p>{escape(block)}</p>" for block in text.split("\n\n")))
    subject = f"[integrations] OAuth client rejected ({reason}), integration {about.integration_id}"
    return _message(ops, subject, text, html, message_id(incident_id, "ops", mail_from), mail_from)


_BUTTON = "background:#1a73e8;color:#fff;padding:10px 18px;border-radius:4px;text-decoration:none;display:inline-block"


def _page(body: str) -> str:
    return (
        '<!doctype html><html><body style="font-family:Arial,Helvetica,sans-serif;font-size:15px;'
        f'line-height:1.5;color:#202124;max-width:560px">{body}'
        '<p style="color:#5f6368">-- integrations</p></body></html>'
    )


def _message(to: str, subject: str, text: str, html: str, msg_id: str, mail_from: str) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = mail_from
    msg["To"] = to
    # Names come from Google and the database: a line break (CR, LF, U+2028, ...) in a header would make
    # the email library refuse the message, so every run of whitespace becomes one space.
    msg["Subject"] = " ".join(subject.split())
    msg["Message-ID"] = msg_id
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg
