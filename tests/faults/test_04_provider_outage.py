"""4. Google's token endpoint fails half the time for a while, then for good: nobody is asked to re-authenticate.

Transient failures (5xx, 429 with Retry-After) are retried with backoff and leave the integration alone; the
only re-auth emails are for grants the user really revoked (a control group, so that "no email" means the
notifier was listening). When the endpoint never recovers, the integration shows the transient error after
the retries, still without an email, and the next good refresh clears it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from common.models import Incident, Integration
from common.tasks import REFRESH_INTEGRATION, send
from tests.faults.evidence import figure
from tests.faults.lab import Lab
from tests.faults.scale import Scale
from tests.faults.seed import Seeded, seed
from tests.support.api import bearer, build_app, close
from tests.support.notify import smtp_server
from tests.support.polling import wait_for

DAY = 86_400
RETRIES = {"min_backoff": 200, "max_backoff": 1_000}
FEW_RETRIES = {"max_retries": 2, "min_backoff": 100, "max_backoff": 300}
MSG_UNAVAILABLE = "Google's token endpoint is unavailable (503)"


def rows(c, fleet: list[Seeded]) -> dict[int, Integration]:
    with c.sessions() as s:
        return {r.id: r for r in s.scalars(select(Integration).where(Integration.id.in_([f.id for f in fleet])))}


def renewed(c, fleet: list[Seeded]) -> bool:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    return all(r.token_expires_at > soon for r in rows(c, fleet).values())


def incidents(c) -> list[tuple[int, str]]:
    with c.sessions() as s:
        return [tuple(r) for r in s.execute(select(Incident.integration_id, Incident.kind))]


@pytest.mark.timeout(600)
def test_provider_outage_sends_no_reauth_email_and_all_refresh_after_recovery(scale: Scale, lab: Lab, google):
    fake = google.fake
    c = lab.container(pool_size=4)
    fleet = seed(c, fake, scale.outage_integrations)
    revoked, healthy = fleet[: scale.outage_revoked], fleet[scale.outage_revoked :]
    for s in revoked:
        fake.revoke_user(s.google_email)
    with smtp_server() as (box, port):
        lab.notifier(port)
        for _ in range(2):
            lab.worker(4)

        fake.fail_ratio("token", 503, 0.5, seed=1)
        for s in fleet:
            send(c.broker, REFRESH_INTEGRATION, s.id, DAY, **RETRIES)
        time.sleep(scale.outage_seconds / 2)
        fake.fail_ratio("token", 429, 0.5, seed=2, retry_after=1)
        time.sleep(scale.outage_seconds / 2)
        failed_during_outage = fake.calls.get("token", 0) - len(fleet)
        fake.clear_failures()

        wait_for(lambda: renewed(c, healthy), 120, "every healthy integration to be refreshed", every=0.5)
        wait_for(lambda: all(r.needs_reauth for r in rows(c, revoked).values()), 60, "the revoked ones")
        wait_for(lambda: len(box.messages) >= len(revoked), 60, "the re-auth emails")
        wait_for(lambda: lab.queue_counts(c)["notifications"][:2] == (0, 0), 30, "the notifier to finish")
        assert Counter(str(m["To"]) for m in box.messages) == Counter(s.owner_email for s in revoked)
        assert not any(r.needs_reauth or r.last_sync_status == "error" for r in rows(c, healthy).values())
        assert sorted(incidents(c)) == sorted((s.id, "reauth_required") for s in revoked)
        assert failed_during_outage > 0 and lab.count("retry.scheduled") > 0
        emails_outage = len(box.messages)

        # The endpoint stays down: after its (few) retries the integration shows the transient error.
        down = seed(c, fake, scale.permanent_failures)
        fake.fail_ratio("token", 503, 1.0)
        for s in down:
            send(c.broker, REFRESH_INTEGRATION, s.id, DAY, **FEW_RETRIES)
        wait_for(lambda: all(r.last_sync_status == "error" for r in rows(c, down).values()), 60, "retries to run out")
        app, api_c = build_app(lab.settings(), lab.amqp_url)
        try:
            with TestClient(app) as client:
                shown = [lab.record(client.get(f"/integrations/{s.id}", headers=bearer(s.api_key))) for s in down]
        finally:
            close(api_c)
        for resp in shown:
            body = resp.json()
            assert (body["last_sync_status"], body["error_kind"], body["needs_reauth"]) == ("error", "transient", False)
            assert body["last_sync_message"] == MSG_UNAVAILABLE
        assert fake.calls.get("token", 0) >= len(fleet) + 3 * len(down)
        dead_letters = lab.queue_counts(c)["refresh"][2]
        assert dead_letters == len(revoked) + len(down), "re-auth failures and exhausted retries, nothing else"

        fake.clear_failures()
        for s in down:
            send(c.broker, REFRESH_INTEGRATION, s.id, DAY)
        wait_for(lambda: renewed(c, down), 60, "the next refresh to succeed")
        assert not any(r.last_sync_status == "error" or r.error_kind for r in rows(c, down).values())
        wait_for(lambda: lab.queue_counts(c)["notifications"][:2] == (0, 0), 30, "the notifier to finish")
        assert len(box.messages) == emails_outage, "a transient failure never emails anyone"
        with c.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Incident)) == len(revoked)
    figure(
        f"4. provider outage [{scale.name}]",
        integrations=len(fleet) + len(down),
        token_calls_failed=failed_during_outage,
        retries=lab.count("retry.scheduled"),
        emails_sent=len(box.messages),
        emails_expected=len(revoked),
        reauth_emails_from_outage=len(box.messages) - len(revoked),
    )
