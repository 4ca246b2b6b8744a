"""The Integrations page in real headless Chromium, on the real stack: the API over HTTP (uvicorn), PostgreSQL,
RabbitMQ, a worker, the notifier with a real SMTP server, and the fake Google over HTTP.

A person signs in from the emailed link, connects through the fake Google's consent step, sees the integration
turn Connected and its chart fill, presses Sync now, loses the grant (revoked at Google, then the nightly
refresh-all), sees Needs reconnect with the email's reason, reconnects, and disconnects. Every page is
screenshotted under test-artifacts/ (a failure saves the last page as FAILED-last-page.png).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from common.config import Secret
from common.models import Integration
from common.tasks import REFRESH_ALL, send
from common.users import create_user
from services.fake_google import FakeGoogleServer
from tests.conftest import TEST_ADMIN_KEY, make_settings
from tests.support.api import ApiServer, build_app, close, own_vhost
from tests.support.browser import ARTIFACTS, chromium
from tests.support.flows import new_email
from tests.support.notify import Mailbox, running_notifier, smtp_server
from tests.support.polling import wait_for
from tests.support.web import sign_in_link
from tests.support.worker import RunningWorker, running_worker

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]
ADMIN_KEY = TEST_ADMIN_KEY  # what make_settings configures


@dataclass
class Stack:
    url: str
    box: Mailbox
    worker: RunningWorker
    google: FakeGoogleServer

    def integration(self, user_id: int) -> Integration:
        with self.worker.container.sessions() as s:
            row = s.scalars(select(Integration).where(Integration.user_id == user_id)).first()
            assert row is not None
            return row


@pytest.fixture
def stack(pg_url: str, google: FakeGoogleServer) -> Iterator[Stack]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with own_vhost() as vhost, smtp_server() as (box, port):
        settings = make_settings(
            pg_url, google, broker_url=vhost, public_base_url=url, smtp_url=Secret(f"smtp://127.0.0.1:{port}")
        )
        app, c = build_app(settings, vhost)
        try:
            with running_worker(settings) as worker, running_notifier(settings), ApiServer(app, sock):
                yield Stack(url, box, worker, google)
        finally:
            close(c)


def test_a_person_connects_syncs_loses_and_restores_the_grant_and_disconnects(stack: Stack) -> None:
    email = new_email("owner")
    user_id, _ = create_user(stack.worker.container.sessions, email)
    google_account = new_email("g")
    stack.google.fake.default_user = google_account  # whom the fake's consent step signs in as
    figures: list[dict[str, object]] = []
    with chromium("integrations_page") as b:
        # Sign in from the emailed link.
        b.open(stack.url + "/")
        assert b.find("h1").text == "Sign in"
        figures.append(b.page_figures())
        b.shot("sign-in-form")
        b.find("#email").send_keys(email)
        b.click("form[action='/sign-in'] button")
        b.wait_text("h1", "Check your email")
        b.shot("check-your-email")
        msg = wait_for(lambda: stack.box.to(email), 20, "the sign-in email")[-1]
        b.open(sign_in_link(msg))
        b.wait_text("h1", "Sign in to integrations")
        b.shot("sign-in-link-page")
        b.click("form[action='/sign-in/link'] button")
        b.wait_text("h1", "Your integrations")
        assert email in b.text("header")
        b.shot("integrations-empty")

        # Connect through the fake Google; the first sync fills the chart.
        b.click("form.connect button")
        b.wait_text("h1", "Connected")
        b.shot("connected-done-page")
        b.open(stack.url + "/")
        b.wait_text(".status .label", "Connected", timeout=60)  # the script updates it without a reload
        figures.append(b.page_figures())
        b.shot("integrations-connected")
        b.click(".card h2 a")
        b.wait(lambda: b.all("svg polyline.series"), "the chart's lines")
        assert len(b.all("table tbody tr")) >= 30
        figures.append(b.page_figures())
        b.shot("insights-30-days")
        b.find("input[name='days'][value='90']").click()
        b.click("form.picker button")
        b.wait(lambda: len(b.all("table tbody tr")) >= 90, "90 days of rows")
        b.shot("insights-90-days")

        # Sync now.
        b.open(stack.url + "/")
        before = stack.integration(user_id).last_synced_at
        b.click("form[action$='/sync'] button")
        b.wait_text(".notice", "Sync started")
        b.shot("sync-started")
        wait_for(lambda: stack.integration(user_id).last_synced_at != before, 60, "the sync")
        b.wait_text(".status .label", "Connected")
        b.shot("synced-again")

        # The grant is revoked at Google; the nightly refresh-all meets it.
        assert stack.google.fake.revoke_user(google_account) >= 1
        send(stack.worker.broker, REFRESH_ALL, 86400)
        wait_for(lambda: stack.integration(user_id).needs_reauth, 60, "needs_reauth")
        b.open(stack.url + "/")
        b.wait_text(".status .label", "Needs reconnect")
        assert "Google no longer accepts our access" in b.text(".card .detail")
        assert not b.all("form[action$='/sync'] button"), "no Sync now while only the person can fix it"
        b.shot("needs-reconnect")

        # Reconnect: one click into the OAuth flow, then Connected again.
        b.click("form[action$='/reconnect'] button")
        b.wait_text("h1", "Connected")
        wait_for(lambda: not stack.integration(user_id).needs_reauth, 30, "the reconnect")
        b.open(stack.url + "/")
        b.wait_text(".status .label", "Connected", timeout=60)
        b.shot("reconnected")

        # Disconnect, with a confirmation page.
        b.click("a.button.danger")
        b.wait_text("h1", "Disconnect")
        b.shot("disconnect-confirmation")
        b.click("form[action$='/disconnect'] button")
        b.wait_text(".status .label", "Disconnected")
        assert stack.integration(user_id).status == "disconnected"
        b.shot("disconnected")

        # A phone-sized window: the page still reads (no horizontal scrolling).
        b.driver.set_window_size(390, 844)
        b.open(stack.url + "/")
        b.wait_text("h1", "Your integrations")
        assert b.driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        b.shot("integrations-phone")
        b.driver.set_window_size(1280, 900)

        # The operators' page, signed in with the admin key.
        b.open(stack.url + "/admin")
        b.find("#key").send_keys(ADMIN_KEY)
        b.click("form[action='/admin/sign-in'] button")
        b.wait_text("h1", "Operators")
        b.wait_text("#states", "Integrations by state")
        figures.append(b.page_figures())
        b.shot("operators")
    (ARTIFACTS / "integrations_page" / "page-figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


def test_the_page_works_without_javascript(stack: Stack) -> None:
    email = new_email("nojs")
    user_id, _ = create_user(stack.worker.container.sessions, email)
    stack.google.fake.default_user = new_email("g")
    with chromium("integrations_page_without_js", javascript=False) as b:
        b.open(stack.url + "/")
        b.find("#email").send_keys(email)
        b.click("form[action='/sign-in'] button")
        b.wait_text("h1", "Check your email")
        msg = wait_for(lambda: stack.box.to(email), 20, "the sign-in email")[-1]
        b.open(sign_in_link(msg))
        b.click("form[action='/sign-in/link'] button")
        b.wait_text("h1", "Your integrations")
        b.click("form.connect button")
        b.wait_text("h1", "Connected")
        wait_for(lambda: stack.integration(user_id).last_sync_status == "success", 60, "the first sync")
        b.open(stack.url + "/")
        b.wait_text(".status .label", "Connected")
        b.click("form[action$='/sync'] button")
        b.wait_text(".notice", "Sync started")
        b.shot("sync-started-without-js")
        b.click("a.button.danger")
        b.click("form[action$='/disconnect'] button")
        b.wait_text(".status .label", "Disconnected")
        b.shot("disconnected-without-js")
    assert stack.integration(user_id).status == "disconnected"
