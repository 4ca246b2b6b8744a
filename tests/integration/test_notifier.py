"""The notifier on real RabbitMQ, PostgreSQL and SMTP (aiosmtpd): one email per incident, never per night."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from common.bootstrap import Container, bootstrap
from common.config import Secret
from common.errors import ProviderConfigError, ReauthRequired, TransientProviderError
from common.locking import lock_integration
from common.models import Incident, Integration, User, utcnow
from common.sync_service import sync_integration
from common.tasks import NOTIFY_INCIDENT_CLOSED, NOTIFY_INCIDENT_OPENED, REFRESH_INTEGRATION, send
from common.token_service import close_incident
from services.api.app import create_app
from services.api.disconnect import disconnect
from services.browser import one_form
from services.notifier.delivery import Notifier
from services.notifier.mailer import FileMailer, SmtpMailer
from services.scheduler import outbox
from tests.conftest import make_settings
from tests.support.concurrency import lock_waiters, run_in_thread
from tests.support.flows import connect, load, new_email
from tests.support.notify import (
    free_port,
    html_part,
    reconnect_link,
    running_notifier,
    smtp_server,
    text_part,
)
from tests.support.polling import wait_for
from tests.support.worker import running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]
MAIL_FROM = "integrations@example.test"


def settings_for(pg_url, google, amqp_url, smtp_port=None, **over):
    smtp = Secret(f"smtp://127.0.0.1:{smtp_port}") if smtp_port else Secret("")
    return make_settings(pg_url, google, broker_url=amqp_url, smtp_url=smtp, mail_from=MAIL_FROM, **over)


def owner_email(c: Container, integration_id: int) -> str:
    with c.sessions() as s:
        return s.get(User, load(c, integration_id).user_id).email


def incidents(c: Container, integration_id: int) -> list[Incident]:
    with c.sessions() as s:
        return list(s.scalars(select(Incident).where(Incident.integration_id == integration_id).order_by(Incident.id)))


def break_grant(c: Container, google, error=ReauthRequired) -> tuple[int, str, int]:
    """A connected integration whose grant Google revoked, found out by one refresh: (id, owner, incident)."""
    google_email = new_email("g")
    iid = connect(c, google_email)
    google.fake.revoke_user(google_email)
    with pytest.raises(error):
        c.tokens.refresh(iid, 86400)
    return iid, owner_email(c, iid), incidents(c, iid)[-1].id


def test_revoked_grant_over_three_nightly_runs_sends_one_email_whose_link_reconnects(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        settings = settings_for(pg_url, google, amqp_url, port)
        with running_notifier(settings) as notifier, running_worker(settings, threads=2):
            c = notifier.container
            google_email = new_email("g")
            iid = connect(c, google_email)
            owner = owner_email(c, iid)
            google.fake.revoke_user(google_email)

            for night in (1, 2, 3):  # the nightly refresh of this integration, as refresh_all fans it out
                send(notifier.broker, REFRESH_INTEGRATION, iid, 86400)
                wait_for(lambda n=night: load(c, iid).refresh_failure_count == n, what=f"night {night}")
            notifier.drain()

            assert google.fake.refresh_calls_for(google_email) == 3
            [mail] = box.to(owner)
            [incident] = incidents(c, iid)
            assert incident.notified_at is not None and incident.notify_attempts == 1
            row = load(c, iid)
            text = text_part(mail)
            assert mail["Subject"] == f"Action needed: reconnect {row.display_name}"
            assert mail["Message-ID"] == f"<incident-{incident.id}.reauth@example.test>"
            assert row.display_name in text and google_email in text
            assert "access was removed in your Google Account" in text
            assert "testing mode, where Google ends every connection after 7 days" in text
            assert "unused for 6 months" in text and "password was changed" in text
            link = reconnect_link(mail)
            assert link.startswith(f"{settings.public_base_url}/integrations/{iid}/reconnect?token=")
            assert link.replace("&", "&amp;") in html_part(mail)

            # The link: a page whose button goes to Google's consent for the same account, then the callback
            # reconnects this integration. Fetching the link (a mail scanner) uses nothing.
            with TestClient(create_app(c)) as client:
                assert client.head(link).status_code == 200
                page = client.get(link)
                assert page.status_code == 200 and google_email not in page.text
                form = one_form(page.text, str(page.url))
                to_google = client.request(form.method, form.action, data=form.fields, follow_redirects=False)
                assert to_google.status_code == 303
                auth = urlsplit(to_google.headers["location"])
                assert auth.geturl().startswith(settings.google_auth_url)
                assert parse_qs(auth.query)["login_hint"] == [google_email]
                consent = httpx.get(to_google.headers["location"], follow_redirects=False, timeout=10)
                # Google sends the browser (signed in by the button) back to PUBLIC_BASE_URL's callback.
                done = client.get(consent.headers["location"])
                assert done.status_code == 200 and "is connected again" in done.text

            row = load(c, iid)
            assert (row.needs_reauth, row.error_kind) == (False, None)
            assert row.last_sync_status != "error"  # the reconnect's first sync may already have run
            [incident] = incidents(c, iid)
            assert incident.closed_at is not None
            wait_for(lambda: len(box.to(owner)) == 2, what="the reconnected email")
            notifier.drain()
            confirmation = box.to(owner)[1]
            assert confirmation["Subject"] == f"Reconnected: {row.display_name}"
            assert "works again" in text_part(confirmation)
            assert len(box.to(owner)) == 2


def test_duplicate_events_and_the_outbox_sweep_send_nothing_more(pg_url, amqp_url, google):
    with smtp_server() as (box, port), running_notifier(settings_for(pg_url, google, amqp_url, port)) as notifier:
        c = notifier.container
        _, owner, incident_id = break_grant(c, google)
        wait_for(lambda: box.to(owner), what="the re-auth email")
        for _ in range(3):  # redeliveries, the outbox sweep, a second notifier: all the same event
            send(notifier.broker, NOTIFY_INCIDENT_OPENED, incident_id)
        swept = outbox.sweep(c.sessions, notifier.broker, utcnow() + dt.timedelta(minutes=2), 60)
        assert (NOTIFY_INCIDENT_OPENED, incident_id) not in swept  # notified already
        notifier.drain()
        assert len(box.to(owner)) == 1


def test_an_event_lost_between_commit_and_publish_is_sent_by_the_outbox_sweep(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        settings = settings_for(pg_url, google, amqp_url, port)
        with running_notifier(settings) as notifier:
            unpublished = bootstrap(settings, configure_logs=False)  # no broker: the event goes nowhere
            try:
                _, owner, incident_id = break_grant(unpublished, google)
            finally:
                unpublished.close()
            notifier.drain()
            assert box.to(owner) == []
            owed = (NOTIFY_INCIDENT_OPENED, incident_id)
            assert owed not in outbox.sweep(notifier.container.sessions, notifier.broker, utcnow(), 60)  # grace
            later = utcnow() + dt.timedelta(seconds=90)
            assert owed in outbox.sweep(notifier.container.sessions, notifier.broker, later, 60)
            wait_for(lambda: box.to(owner), what="the swept email")
            notifier.drain()
            assert len(box.to(owner)) == 1


def test_smtp_down_then_up_delivers_the_email_exactly_once(pg_url, amqp_url, google):
    port = free_port()  # nothing listens there yet
    with running_notifier(settings_for(pg_url, google, amqp_url, port)) as notifier:
        c = notifier.container
        iid, owner, incident_id = break_grant(c, google)
        wait_for(lambda: incidents(c, iid)[0].notify_attempts >= 1, what="a failed first attempt")
        assert incidents(c, iid)[0].notified_at is None
        for _ in range(2):  # the sweep's copies, retrying alongside the original
            send(notifier.broker, NOTIFY_INCIDENT_OPENED, incident_id)
        with smtp_server(port) as (box, _):
            wait_for(lambda: box.to(owner), timeout=60, what="the email after SMTP came back")
            notifier.drain(timeout=60)
            assert len(box.to(owner)) == 1
        [incident] = incidents(c, iid)
        assert incident.notified_at is not None and incident.notify_attempts >= 2


def test_transient_failures_send_no_email(pg_url, amqp_url, google):
    with smtp_server() as (box, port), running_notifier(settings_for(pg_url, google, amqp_url, port)) as notifier:
        c = notifier.container
        iid = connect(c)
        owner = owner_email(c, iid)
        google.fake.fail_next("token", 503, count=3)
        for _ in range(3):
            with pytest.raises(TransientProviderError):
                c.tokens.refresh(iid, 86400)
        c.tokens.record_transient_failure(iid, TransientProviderError("http_503", "Google is unavailable (503)"))
        notifier.drain()
        row = load(c, iid)
        assert (row.last_sync_status, row.error_kind, row.needs_reauth) == ("error", "transient", False)
        assert incidents(c, iid) == []
        assert box.to(owner) == []


def test_workspace_reauth_policy_is_explained(pg_url, amqp_url, google):
    with smtp_server() as (box, port), running_notifier(settings_for(pg_url, google, amqp_url, port)) as notifier:
        c = notifier.container
        google_email = new_email("g")
        iid = connect(c, google_email)
        google.fake.set_grant_error(google_email, "invalid_rapt")
        with pytest.raises(ReauthRequired):
            c.tokens.refresh(iid, 86400)
        [mail] = wait_for(lambda: box.to(owner_email(c, iid)), what="the re-auth email")
        assert "Google Workspace policy asks you to sign in again" in text_part(mail)


def test_oauth_client_errors_email_operators_once_and_never_the_user(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        settings = settings_for(pg_url, google, amqp_url, port, ops_email="ops@example.test")
        with running_notifier(settings) as notifier:
            c = notifier.container
            iid = connect(c)
            google.fake.set_client_status("deleted_client")
            for _ in range(2):
                with pytest.raises(ProviderConfigError):
                    c.tokens.refresh(iid, 86400)
            notifier.drain()
            [incident] = incidents(c, iid)
            mails = [m for m in box.to("ops@example.test") if f"integration {iid}" in str(m["Subject"])]
            assert len(mails) == 1
            assert "deleted_client" in mails[0]["Subject"] and "GOOGLE_CLIENT_ID" in text_part(mails[0])
            assert box.to(owner_email(c, iid)) == []
            assert incident.notified_at is not None


def test_a_broken_oauth_client_is_one_operators_email_not_one_per_integration(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        settings = settings_for(pg_url, google, amqp_url, port, ops_email="ops@example.test")
        with running_notifier(settings) as notifier, capture_logs() as logs:
            c = notifier.container
            ids = [connect(c) for _ in range(3)]
            google.fake.set_client_status("unauthorized_client")  # every integration fails, an incident each
            for iid in ids:
                with pytest.raises(ProviderConfigError):
                    c.tokens.refresh(iid, 86400)
            notifier.drain()
            google.fake.set_client_status(None)
            opened = [i for iid in ids for i in incidents(c, iid)]
        assert len(opened) == 3 and all(i.notified_at is not None for i in opened)
        mails = [m for m in box.to("ops@example.test") if "(unauthorized_client)" in str(m["Subject"])]
        assert len(mails) == 1
        emailed = int(str(mails[0]["Subject"]).rsplit(" ", 1)[1])  # "..., integration <id>"
        logged = {e["integration_id"] for e in logs if e["event"] == "incident.operator_alert"}
        assert logged == set(ids) - {emailed}, "the others are an error log line each"


def test_oauth_client_errors_without_ops_email_are_an_error_log_line(pg_url, amqp_url, google):
    with smtp_server() as (box, port), running_notifier(settings_for(pg_url, google, amqp_url, port)) as notifier:
        c = notifier.container
        with capture_logs() as logs:
            iid = connect(c)
            google.fake.set_client_status("unauthorized_client")
            with pytest.raises(ProviderConfigError):
                c.tokens.refresh(iid, 86400)
            notifier.drain()
        [incident] = incidents(c, iid)
        alerts = [e for e in logs if e["event"] == "incident.operator_alert" and e.get("incident_id") == incident.id]
        assert [a["log_level"] for a in alerts] == ["error"]
        assert incident.notified_at is not None
        assert box.messages == []


def test_without_smtp_url_the_email_is_an_eml_file(pg_url, amqp_url, google, tmp_path):
    settings = settings_for(pg_url, google, amqp_url, None, var_dir=str(tmp_path))
    with running_notifier(settings) as notifier:
        iid, owner, incident_id = break_grant(notifier.container, google)
        notifier.drain()
        path = Path(tmp_path, "mail", f"incident-{incident_id}.reauth_example.test.eml")
        wait_for(path.exists, what=str(path))
        content = path.read_text()
        assert f"To: {owner}" in content and f"/integrations/{iid}/reconnect?token=" in content


def test_standalone_sqlite_sends_once_per_incident_to_eml_files(lite, google, tmp_path):
    mailer = FileMailer(tmp_path / "mail")
    notifier = Notifier(lite.sessions, lite.engine, lite.settings, mailer)
    _, owner, incident_id = break_grant(lite, google)
    assert notifier.incident_opened(incident_id) == "sent"
    assert notifier.incident_opened(incident_id) == "already_notified"
    [eml] = (tmp_path / "mail").glob("*.eml")
    assert f"To: {owner}" in eml.read_text()


def test_a_grant_revoked_while_the_oauth_client_was_broken_still_emails_the_user(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        settings = settings_for(pg_url, google, amqp_url, port, ops_email="ops@example.test")
        with running_notifier(settings) as notifier:
            c = notifier.container
            google_email = new_email("g")
            iid = connect(c, google_email)
            owner = owner_email(c, iid)
            google.fake.set_client_status("deleted_client")
            with pytest.raises(ProviderConfigError):
                c.tokens.refresh(iid, 86400)
            google.fake.set_client_status(None)  # the operators fixed the client; meanwhile the user revoked access
            google.fake.revoke_user(google_email)
            for _ in range(2):
                with pytest.raises(ReauthRequired):
                    c.tokens.refresh(iid, 86400)
            [mail] = wait_for(lambda: box.to(owner), what="the re-auth email")
            assert f"/integrations/{iid}/reconnect?token=" in text_part(mail)
            client_incident, reauth_incident = incidents(c, iid)
            assert client_incident.kind == "provider_config" and client_incident.closed_at is not None
            assert reauth_incident.kind == "reauth_required" and reauth_incident.closed_at is None
            notifier.drain()
            assert len(box.to(owner)) == 1


def test_a_display_name_with_line_breaks_is_emailed_on_one_subject_line(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        settings = settings_for(pg_url, google, amqp_url, port)
        c = bootstrap(settings, configure_logs=False)  # no broker: the notifier is called directly below
        try:
            iid, owner, incident_id = break_grant(c, google)
            with c.sessions.begin() as s:
                s.get(Integration, iid).display_name = "Cafe\r\nBcc: victim@example.test\nX-Evil: 1\u2028<b>"
            notifier = Notifier(c.sessions, c.engine, c.settings, SmtpMailer(f"smtp://127.0.0.1:{port}"))
            assert notifier.incident_opened(incident_id) == "sent"
        finally:
            c.close()
        [mail] = box.messages
        assert mail["Subject"] == "Action needed: reconnect Cafe Bcc: victim@example.test X-Evil: 1 <b>"
        assert mail["Bcc"] is None and mail["X-Evil"] is None and str(mail["To"]) == owner
        assert "Cafe" in text_part(mail) and "&lt;b&gt;" in html_part(mail) and "<b>" not in html_part(mail)


def test_a_lasting_403_is_one_email_however_many_nightly_refreshes_follow(pg_url, amqp_url, google):
    with smtp_server() as (box, port), running_notifier(settings_for(pg_url, google, amqp_url, port)) as notifier:
        c = notifier.container
        google_email = new_email("g")
        iid = connect(c, google_email)
        owner = owner_email(c, iid)
        google.fake.forbid_location(google.fake.layout_for(google_email).accounts[0].locations[0].name)
        for _night in range(3):
            if not load(c, iid).needs_reauth:  # the app's daily sync (POST /sync refuses one needing re-auth)
                with pytest.raises(ReauthRequired):
                    sync_integration(c, iid)
                notifier.drain()  # the email goes out: the refresh comes hours later
            c.tokens.refresh(iid, 86400)  # the nightly refresh: the grant itself still works
        notifier.drain()
        [mail] = box.to(owner)
        assert mail["Subject"].startswith("Action needed")
        [incident] = incidents(c, iid)
        assert (incident.reason, incident.closed_at) == ("permission_denied", None)
        assert load(c, iid).needs_reauth


def test_an_incident_closed_while_its_email_is_claimed_neither_deadlocks_nor_emails(pg_url, amqp_url, google):
    with smtp_server() as (box, port):
        c = bootstrap(settings_for(pg_url, google, amqp_url, port), configure_logs=False)  # no broker
        try:
            iid, owner, incident_id = break_grant(c, google)
            notifier = Notifier(c.sessions, c.engine, c.settings, SmtpMailer(f"smtp://127.0.0.1:{port}"))
            # The user reconnects from the app just as the notifier claims the email: the callback holds the
            # integration's lock while it closes the incident (common.connect).
            with c.sessions.begin() as s:
                row = lock_integration(s, iid, 10)
                claim, outcome = run_in_thread(lambda: notifier.incident_opened(incident_id))
                wait_for(lambda: lock_waiters(c) > 0, what="the notifier waiting for a lock")
                close_incident(s, row, utcnow())
            claim.join(30)
            assert outcome == ["closed"]
            assert box.to(owner) == []
        finally:
            c.close()


def test_a_reconnected_email_still_owed_when_the_user_disconnects_is_never_sent(pg_url, amqp_url, google):
    """Reconnected, then disconnected before the confirmation went out (the mail server was down, say):
    "it works again" would be false, so neither the late event nor the outbox sweep sends it."""
    with smtp_server() as (box, port), running_notifier(settings_for(pg_url, google, amqp_url, port)) as notifier:
        c = notifier.container
        iid, owner, incident_id = break_grant(c, google)
        wait_for(lambda: box.to(owner), what="the re-auth email")
        row = load(c, iid)
        assert connect(c, row.external_account_email, user_id=row.user_id) == iid  # reconnected; event not sent yet
        assert incidents(c, iid)[-1].closed_at is not None
        disconnect(c, row.user_id, iid)
        send(notifier.broker, NOTIFY_INCIDENT_CLOSED, incident_id)  # the event arrives after all
        swept = outbox.sweep(c.sessions, notifier.broker, utcnow() + dt.timedelta(minutes=2), 120)
        assert (NOTIFY_INCIDENT_CLOSED, incident_id) not in swept
        notifier.drain()
        assert len(box.to(owner)) == 1
