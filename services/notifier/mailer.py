"""Sending mail: SMTP from SMTP_URL (STARTTLS or smtps:// when it carries credentials), or `.eml` files in var/mail/."""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from common.config import Settings
from common.errors import ConfigError, IntegrationsError

SMTP_TIMEOUT_SECONDS = 20.0
_TRUE = {"1", "true", "yes", "on"}


class MailDeliveryError(IntegrationsError):
    """The mail server could not take the message now; the notifier retries with backoff."""


class MailRejected(IntegrationsError):
    """The mail server refused the message for good (a 5xx on the recipient); retrying will not help."""


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    """One SMTP connection per message: emails are rare, and a fresh connection never goes stale."""

    def __init__(self, url: str, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port  # a ValueError for a port that is not a number in 0-65535
        except ValueError:
            port = -1
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname or port == -1:
            raise ConfigError("SMTP_URL must look like smtp://user:pass@host:587?starttls=1 (or smtps://...)")
        self._implicit_tls = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = port or (465 if self._implicit_tls else 25)
        self._user = unquote(parts.username or "")
        self._password = unquote(parts.password or "")
        query = parse_qs(parts.query)
        self._starttls = query.get("starttls", ["0"])[0].lower() in _TRUE
        plaintext_allowed = query.get("insecure", ["0"])[0].lower() in _TRUE
        if (self._user or self._password) and not (self._starttls or self._implicit_tls or plaintext_allowed):
            # AUTH PLAIN/LOGIN would send the password in clear text to anyone on the path.
            raise ConfigError(
                "SMTP_URL has credentials but no TLS: add ?starttls=1 (STARTTLS), use smtps:// (implicit TLS), "
                "or add ?insecure=1 to send them in clear text on purpose"
            )
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"SmtpMailer({self._host}:{self._port}, starttls={self._starttls})"

    def send(self, message: EmailMessage) -> None:
        try:
            with self._connect() as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self._user:
                    smtp.login(self._user, self._password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(code >= 500 for code in codes):
                raise MailRejected(f"the mail server refused the recipient (SMTP {codes[0]})") from None
            raise MailDeliveryError(f"the mail server deferred the recipient (SMTP {codes[0]})") from None
        except (smtplib.SMTPException, OSError) as exc:
            # Only the class and the server's address: SMTP errors can echo the command that failed.
            raise MailDeliveryError(f"SMTP {self._host}:{self._port} unavailable ({type(exc).__name__})") from None

    def _connect(self) -> smtplib.SMTP:
        if self._implicit_tls:
            return smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout, context=ssl.create_default_context())
        return smtplib.SMTP(self._host, self._port, timeout=self._timeout)


class FileMailer:
    """Writes each message to `<dir>/<message id>.eml`; a resend of the same message overwrites it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"FileMailer({str(self.directory)!r})"

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(message["Message-ID"] or "message").strip("<>")) + ".eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(message.as_bytes())
        os.replace(tmp, self.directory / name)


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when SMTP_URL is set, else `.eml` files in `{VAR_DIR}/mail/`."""
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url.reveal())
    return FileMailer(Path(settings.var_dir) / "mail")
