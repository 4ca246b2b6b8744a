"""The web pages on real PostgreSQL and RabbitMQ: statuses in plain words, insights parameters, the operators'
page's access, CSP and no inline script or style, no token in any page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from common.models import Integration, User, utcnow
from common.sync_service import sync_integration
from tests.conftest import TEST_ADMIN_KEY
from tests.support.api import Api
from tests.support.web import csrf_of, sign_in

pytest_plugins = ["tests.support.api"]
pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", re.IGNORECASE)


def signed_in_browser(api: Api) -> tuple[TestClient, int, dict[str, str]]:
    user_id, headers = api.user()
    browser = TestClient(api.client.app)
    sign_in(browser, api.c.sessions, user_id)
    return browser, user_id, headers


def set_row(api: Api, iid: int, **values: object) -> None:
    with api.c.sessions.begin() as s:
        s.execute(update(Integration).where(Integration.id == iid).values(**values))


def card_text(page: str, iid: int) -> str:
    start = page.index(f'id="integration-{iid}"')
    end = page.find('<li class="card"', start)
    return re.sub(r"<[^>]+>|\s+", " ", page[start : end if end > 0 else page.index("</main>")])


def test_each_state_reads_in_plain_words(api: Api) -> None:
    browser, _, headers = signed_in_browser(api)
    iid = api.connect(headers)
    set_row(api, iid, last_sync_status=None, last_synced_at=None)
    assert "Syncing" in card_text(browser.get("/").text, iid), "the first sync"
    set_row(api, iid, last_sync_status="success", last_synced_at=utcnow())
    assert "Connected" in card_text(browser.get("/").text, iid)
    set_row(api, iid, sync_requested_at=utcnow() + dt.timedelta(seconds=1))
    assert "Syncing" in card_text(browser.get("/").text, iid), "after Sync now, until the sync ends"
    set_row(api, iid, sync_requested_at=None, last_sync_status="error", error_kind="transient", last_sync_message="x")
    assert "Google is having trouble, we keep retrying" in card_text(browser.get("/").text, iid)
    set_row(api, iid, needs_reauth=True, error_kind="reauth_required", error_reason="invalid_grant")
    card = card_text(browser.get("/").text, iid)
    assert "Needs reconnect" in card and "Google no longer accepts our access" in card
    assert "Sync now" not in card and "Reconnect" in card
    set_row(api, iid, status="disconnected", needs_reauth=False)
    card = card_text(browser.get("/").text, iid)
    assert "Disconnected" in card and "Sync now" not in card and "Reconnect" not in card
    feed = browser.get("/web/status").json()["integrations"]
    assert [(f["id"], f["status"]) for f in feed] == [(iid, "disconnected")]


def test_insights_follow_the_metric_and_range_picked(api: Api) -> None:
    browser, _, headers = signed_in_browser(api)
    iid = api.connect(headers)
    sync_integration(api.c, iid)  # the first sync, run here rather than by a worker
    page = browser.get(f"/web/integrations/{iid}")
    assert page.status_code == 200 and "<svg" in page.text and "polyline" in page.text
    metrics = re.findall(r'<option value="([A-Z_]+)"', page.text)
    assert len(metrics) >= 2
    rows30 = page.text.count('<tr><th scope="row">')
    other = browser.get(f"/web/integrations/{iid}", params={"metric": metrics[1], "days": "90"})
    assert f'<option value="{metrics[1]}" selected>' in other.text
    assert 'value="90" checked' in other.text
    assert other.text.count('<tr><th scope="row">') > rows30 >= 28
    odd = browser.get(f"/web/integrations/{iid}", params={"metric": "<script>", "days": "9999"})
    assert odd.status_code == 200 and "<script>" not in odd.text and 'value="30" checked' in odd.text


def test_pages_carry_a_strict_csp_no_inline_script_or_style_and_no_token(api: Api) -> None:
    browser, _, headers = signed_in_browser(api)
    iid = api.connect(headers)
    with api.c.sessions() as s:
        row = s.get(Integration, iid)
        assert row is not None
        tokens = [
            api.c.cipher.decrypt(row.access_token_enc, integration_id=iid, field="access_token"),
            api.c.cipher.decrypt(row.refresh_token_enc, integration_id=iid, field="refresh_token"),
        ]
    key = headers["Authorization"].split()[1]
    pages = {
        "/": browser.get("/"),
        "/web/integrations/1": browser.get(f"/web/integrations/{iid}"),
        "disconnect": browser.get(f"/web/integrations/{iid}/disconnect"),
        "signed out": TestClient(api.client.app).get("/"),
        "admin": api.client.get("/admin", headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}"}),
    }
    for name, resp in pages.items():
        assert resp.status_code == 200, name
        csp = resp.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, name
        assert resp.headers["cache-control"] == "no-store", name
        assert not INLINE.search(resp.text), (name, INLINE.search(resp.text))
        assert not [t for t in [*tokens, key] if t in resp.text], name
    js = browser.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


def test_the_operators_page_needs_the_admin_key_or_an_operator_session(api: Api) -> None:
    _, headers = api.user()
    broken = api.connect(headers)
    set_row(
        api, broken, last_sync_status="error", needs_reauth=True, error_kind="reauth_required", last_sync_message="m"
    )
    anonymous = TestClient(api.client.app)
    assert 'action="/admin/sign-in"' in anonymous.get("/admin").text
    assert anonymous.get("/admin", headers={"Authorization": "Bearer wrong"}).status_code == 401
    user_browser, _, _ = signed_in_browser(api)
    assert 'action="/admin/sign-in"' in user_browser.get("/admin").text, "a user's session is not an operator's"
    assert anonymous.post("/admin/sign-in", data={"key": "wrong"}).status_code == 401
    signed = anonymous.post("/admin/sign-in", data={"key": TEST_ADMIN_KEY}, follow_redirects=False)
    assert signed.status_code == 303 and TEST_ADMIN_KEY not in signed.headers["set-cookie"]
    page = anonymous.get("/admin").text
    assert "Integrations by state" in page and "Needing attention" in page
    with api.c.sessions() as s:
        owner = s.get(User, s.get(Integration, broken).user_id).email
    assert owner in page
    # Google quota use, from the governor: one row per API with its budget (GBP_QPM of the test settings).
    for api_name in ("account_management", "business_information", "performance"):
        assert f"<td>{api_name}</td><td>{api.c.settings.gbp_qpm}</td>" in page, api_name
    token = csrf_of(page)
    assert anonymous.post("/sign-out", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert 'action="/admin/sign-in"' in anonymous.get("/admin").text
