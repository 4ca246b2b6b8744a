"""The sign-in email through the notifier and a real SMTP server: one email per request, nothing for a used or
expired request, and a link that signs in."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from common.bootstrap import bootstrap
from common.config import Secret
from common.models import SignInLink, utcnow
from common.sign_in import request_link
from common.tasks import NOTIFY_SIGN_IN, send
from common.users import create_user
from tests.conftest import make_settings
from tests.support.api import own_vhost
from tests.support.flows import new_email
from tests.support.notify import running_notifier, smtp_server, text_part
from tests.support.polling import wait_for
from tests.support.web import SIGN_IN_LINK

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_each_request_is_mailed_once_and_a_used_or_expired_one_not_at_all(pg_url: str, google) -> None:
    with own_vhost() as vhost, smtp_server() as (box, port):
        settings = make_settings(pg_url, google, broker_url=vhost, smtp_url=Secret(f"smtp://127.0.0.1:{port}"))
        with running_notifier(settings) as notifier:
            c = notifier.container
            email = new_email("person")
            create_user(c.sessions, email)
            with c.sessions.begin() as s:
                ids = [request_link(s, email, next_path=None, now=utcnow()) for _ in range(3)]
            sent, used, expired = ids
            assert None not in ids
            with c.sessions.begin() as s:
                s.execute(update(SignInLink).where(SignInLink.id == used).values(used_at=utcnow()))
                past = utcnow() - dt.timedelta(minutes=1)
                s.execute(update(SignInLink).where(SignInLink.id == expired).values(expires_at=past))
            for row_id in (sent, sent, used, expired):  # a redelivery of the first, and two that must not send
                send(notifier.broker, NOTIFY_SIGN_IN, row_id)
            notifier.drain()
            mails = wait_for(lambda: box.to(email), 10, "the sign-in email")
            assert len(mails) == 1
            body = text_part(mails[0])
            assert SIGN_IN_LINK.search(body) and "15" not in mails[0]["Subject"]
            assert body.count(settings.public_base_url + "/sign-in/link?token=") == 1


def test_an_unknown_address_or_too_many_requests_record_nothing(pg_url: str, google) -> None:
    c = bootstrap(make_settings(pg_url, google), configure_logs=False)
    try:
        email = new_email("busy")
        create_user(c.sessions, email)
        with c.sessions.begin() as s:
            assert request_link(s, new_email("nobody"), next_path=None, now=utcnow()) is None
            made = [request_link(s, email.upper(), next_path="//evil.example", now=utcnow()) for _ in range(7)]
        assert made[:5] == sorted(made[:5]) and None not in made[:5] and made[5:] == [None, None]
        with c.sessions() as s:
            row = s.get(SignInLink, made[0])
            assert row is not None and row.next_path == "/", "only first-party places to go on to"
    finally:
        c.close()
