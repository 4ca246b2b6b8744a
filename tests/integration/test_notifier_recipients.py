"""A user row stored before `users create` checked addresses: a list-like email must not receive a reconnect link."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from common.config import Secret
from common.errors import ReauthRequired
from common.models import Incident, User
from common.users import create_user
from tests.conftest import make_settings
from tests.support.flows import connect, new_email
from tests.support.notify import running_notifier, smtp_server

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def test_a_list_like_stored_email_gets_no_reauth_email_and_is_not_retried(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        settings = make_settings(
            pg_url, google, broker_url=amqp_url, smtp_url=Secret(f"smtp://127.0.0.1:{port}"), mail_from="i@example.test"
        )
        with running_notifier(settings) as notifier:
            c = notifier.container
            user_id, _ = create_user(c.sessions, new_email())
            with c.sessions.begin() as s:
                s.get(User, user_id).email = f"victim-{user_id},attacker@evil.example"
            google_email = new_email("g")
            iid = connect(c, google_email, user_id=user_id)
            google.fake.revoke_user(google_email)
            with pytest.raises(ReauthRequired):
                c.tokens.refresh(iid, 86400)  # opens the incident and publishes its event
            notifier.drain()
            assert box.messages == [], "the reconnect link went to " + str(box.messages[0]["To"])
            with c.sessions() as s:
                incident = s.scalars(select(Incident).where(Incident.integration_id == iid)).one()
            assert incident.notified_at is not None, "settled as rejected: the outbox sweep does not resend it"
