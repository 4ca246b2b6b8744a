"""The notifier's actors, declared on a given broker with the container they run with (nothing at import)."""

from __future__ import annotations

import dramatiq

from common.bootstrap import Container
from common.broker import MAX_RETRIES
from common.tasks import NOTIFY_INCIDENT_CLOSED, NOTIFY_INCIDENT_OPENED, NOTIFY_QUEUE, NOTIFY_SIGN_IN
from services.notifier.delivery import Notifier
from services.notifier.mailer import Mailer, make_mailer
from services.notifier.sign_in import SignInMailer

# Above the SMTP timeout plus the wait for another delivery's incident lock.
TIME_LIMIT_MS = 2 * 60_000


def declare_actors(broker: dramatiq.Broker, container: Container, mailer: Mailer | None = None) -> Notifier:
    """Declare the notifier's actors (incident opened / closed, sign-in) on `broker`; returns the Notifier.

    A mail server failure raises, so Dramatiq retries with exponential backoff (common.broker); once
    retries are exhausted the scheduler's outbox sweep publishes the event again later.
    """
    mailer = mailer or make_mailer(container.settings)
    notifier = Notifier(container.sessions, container.engine, container.settings, mailer)
    sign_in = SignInMailer(container.sessions, container.settings, mailer)

    def notify_incident_opened(incident_id: int) -> None:
        notifier.incident_opened(incident_id)

    def notify_incident_closed(incident_id: int) -> None:
        notifier.incident_closed(incident_id)

    def notify_sign_in(sign_in_id: int) -> None:
        sign_in.send(sign_in_id)

    for name, fn in (
        (NOTIFY_INCIDENT_OPENED, notify_incident_opened),
        (NOTIFY_INCIDENT_CLOSED, notify_incident_closed),
        (NOTIFY_SIGN_IN, notify_sign_in),
    ):
        declare = dramatiq.actor(
            actor_name=name, queue_name=NOTIFY_QUEUE, broker=broker, max_retries=MAX_RETRIES, time_limit=TIME_LIMIT_MS
        )
        declare(fn)
    return notifier
