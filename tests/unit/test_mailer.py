"""SMTP_URL as the notifier reads it."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from services.notifier.mailer import SmtpMailer


def test_starttls_and_credentials_are_read_from_the_url():
    mailer = SmtpMailer("smtp://mail%40example.com:p%40ss@mail.example.com:587?starttls=1")

    assert repr(mailer) == "SmtpMailer(mail.example.com:587, starttls=True)"
    assert "p@ss" not in repr(mailer)


@pytest.mark.parametrize(
    "url", ["smtp://user:hunter2@mail.example.com:abc", "smtp://user:hunter2@mail.example.com:99999"]
)
def test_a_bad_port_is_a_config_error_naming_smtp_url_without_the_password(url):
    with pytest.raises(ConfigError, match="SMTP_URL") as raised:
        SmtpMailer(url)

    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://user:hunter2@mail.example.com:587",
        "smtp://user:hunter2@mail.example.com:25?starttls=0",
        "smtp://user@mail.example.com:25",
    ],
)
def test_credentials_without_tls_are_refused_at_start(url):
    """Without STARTTLS or implicit TLS the password would cross the network in clear text (AUTH PLAIN/LOGIN)."""
    with pytest.raises(ConfigError, match=r"SMTP_URL .*STARTTLS.*smtps://.*insecure=1") as raised:
        SmtpMailer(url)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://user:hunter2@mail.example.com:587?starttls=1",
        "smtps://user:hunter2@mail.example.com:465",
        "smtp://user:hunter2@127.0.0.1:1025?insecure=1",
        "smtp://mailpit:1025",  # no credentials: nothing to protect
    ],
)
def test_tls_or_an_explicit_opt_out_or_no_credentials_start(url):
    SmtpMailer(url)
