"""The caller's integrations over HTTP: list, show, sync, refresh, disconnect, insights."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from common.errors import ReauthRequired
from common.models import Incident, Insight, Integration
from common.tasks import NOTIFY_INCIDENT_CLOSED, REFRESH_INTEGRATION, SYNC_INTEGRATION
from services.api.serialize import INTEGRATION_FIELDS
from services.scheduler import outbox
from tests.support.api import Api, drain, messages_for
from tests.support.flows import load, new_email

pytest_plugins = ["tests.support.api"]


def _set(api: Api, iid: int, **values: object) -> None:
    with api.c.sessions.begin() as s:
        s.execute(update(Integration).where(Integration.id == iid).values(**values))


def test_list_and_get_answer_exactly_the_contract_fields(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)

    listed = api.client.get("/integrations", headers=headers).json()
    one = api.client.get(f"/integrations/{iid}", headers=headers).json()
    assert listed == [one]
    assert list(one) == list(INTEGRATION_FIELDS)
    assert one["id"] == iid and one["platform"] == "google" and one["status"] == "active"
    assert one["needs_reauth"] is False and one["error_kind"] is None
    assert one["last_sync_status"] is None and one["last_synced_at"] is None
    for key in ("token_expires_at", "created_at"):
        parsed = dt.datetime.fromisoformat(one[key])
        assert parsed.utcoffset() == dt.timedelta(0), f"{key} carries its UTC offset"
    assert dt.datetime.fromisoformat(one["token_expires_at"]) == load(api.c, iid).token_expires_at


def test_sync_answers_202_and_the_message_is_in_the_queue(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    resp = api.client.post(f"/integrations/{iid}/sync", headers=headers)

    assert resp.status_code == 202
    body = resp.json()
    assert body["integration_id"] == iid
    queued = messages_for(api.amqp_url, "sync", SYNC_INTEGRATION, iid)
    assert [(m["message_id"], m["args"]) for m in queued] == [(body["message_id"], [iid])]


def test_refresh_answers_202_and_queues_a_refresh_that_always_calls_google(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    resp = api.client.post(f"/integrations/{iid}/refresh", headers=headers)

    assert resp.status_code == 202
    queued = messages_for(api.amqp_url, "refresh", REFRESH_INTEGRATION, iid)
    assert [m["message_id"] for m in queued] == [resp.json()["message_id"]]
    within = queued[0]["args"][1]
    assert within >= 366 * 86400, "the window covers any token lifetime, so the refresh happens now"


def test_unknown_integration_is_404(api: Api) -> None:
    _, headers = api.user()
    for method, path in (("GET", ""), ("POST", "/sync"), ("POST", "/refresh"), ("DELETE", ""), ("GET", "/insights")):
        resp = api.client.request(method, f"/integrations/987654321{path}", headers=headers)
        assert resp.status_code == 404, (method, path)
        assert resp.json() == {"error": {"code": "not_found", "message": "No such integration."}}


@pytest.mark.parametrize("action", ["sync", "refresh"])
def test_work_on_a_disconnected_or_reauth_integration_is_409(api: Api, action: str) -> None:
    _, headers = api.user()
    broken = api.connect(headers)
    _set(api, broken, needs_reauth=True, last_sync_status="error", last_sync_message="Token has been revoked")
    gone = api.connect(headers)
    assert api.client.delete(f"/integrations/{gone}", headers=headers).status_code == 204

    for iid, words in ((broken, "re-authentication"), (gone, "disconnected")):
        resp = api.client.post(f"/integrations/{iid}/{action}", headers=headers)
        assert resp.status_code == 409
        assert resp.json()["error"]["code"] == "conflict" and words in resp.json()["error"]["message"]
    actor = SYNC_INTEGRATION if action == "sync" else REFRESH_INTEGRATION
    assert not [m for m in drain(api.amqp_url, action) if m["actor_name"] == actor and m["args"][0] in (broken, gone)]


def test_delete_revokes_at_google_erases_tokens_and_is_idempotent(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    row = load(api.c, iid)
    refresh_token = api.c.cipher.decrypt(row.refresh_token_enc, integration_id=iid, field="refresh_token")

    assert api.client.delete(f"/integrations/{iid}", headers=headers).status_code == 204
    row = load(api.c, iid)
    assert (row.access_token_enc, row.refresh_token_enc, row.token_expires_at) == (None, None, None)
    with pytest.raises(ReauthRequired):
        api.c.oauth.refresh(refresh_token)  # Google no longer honours the grant
    shown = api.client.get(f"/integrations/{iid}", headers=headers).json()
    assert shown["status"] == "disconnected" and shown["token_expires_at"] is None

    revokes = api.google.fake.calls.get("revoke", 0)
    assert revokes == 1
    assert api.client.delete(f"/integrations/{iid}", headers=headers).status_code == 204
    assert api.google.fake.calls.get("revoke", 0) == revokes, "nothing is left to revoke"


def test_delete_still_disconnects_when_google_cannot_be_reached(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    api.google.fake.fail_next("revoke", 503)

    assert api.client.delete(f"/integrations/{iid}", headers=headers).status_code == 204
    row = load(api.c, iid)
    assert row.status == "disconnected" and row.refresh_token_enc is None


def test_delete_closes_the_open_incident_without_telling_the_user_it_works_again(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    with api.c.sessions.begin() as s:
        s.add(
            Incident(
                integration_id=iid,
                kind="reauth_required",
                reason="invalid_grant",
                message="revoked",
                notified_at=dt.datetime.now(dt.UTC),  # the user was told it broke
            )
        )

    assert api.client.delete(f"/integrations/{iid}", headers=headers).status_code == 204
    with api.c.sessions() as s:
        [incident] = s.execute(select(Incident).where(Incident.integration_id == iid)).scalars().all()
    assert incident.closed_at is not None
    assert not [m for m in drain(api.amqp_url, "notifications") if m["actor_name"] == NOTIFY_INCIDENT_CLOSED]
    # Nor does the outbox sweep later decide a "works again" email is owed.
    later = incident.closed_at + dt.timedelta(minutes=2)
    assert (NOTIFY_INCIDENT_CLOSED, incident.id) not in outbox.sweep(api.c.sessions, api.c.broker, later, 3600)


def _store_insights(api: Api, iid: int, days: list[dt.date]) -> None:
    with api.c.sessions.begin() as s:
        for n, day in enumerate(days):
            for location in ("locations/2", "locations/1"):
                s.add(Insight(integration_id=iid, location=location, metric="WEBSITE_CLICKS", date=day, value=n))


def test_insights_answers_the_stored_rows_of_the_range(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    days = [dt.date(2025, 3, d) for d in (1, 2, 3, 4)]
    _store_insights(api, iid, days)

    resp = api.client.get(
        f"/integrations/{iid}/insights", params={"start": "2025-03-02", "end": "2025-03-03"}, headers=headers
    )
    assert resp.status_code == 200
    assert resp.json() == [
        {"location": "locations/1", "metric": "WEBSITE_CLICKS", "date": "2025-03-02", "value": 1},
        {"location": "locations/2", "metric": "WEBSITE_CLICKS", "date": "2025-03-02", "value": 1},
        {"location": "locations/1", "metric": "WEBSITE_CLICKS", "date": "2025-03-03", "value": 2},
        {"location": "locations/2", "metric": "WEBSITE_CLICKS", "date": "2025-03-03", "value": 2},
    ]


def test_insights_default_to_the_last_30_days(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    today = dt.datetime.now(dt.UTC).date()
    _store_insights(api, iid, [today - dt.timedelta(days=40), today - dt.timedelta(days=3)])

    rows = api.client.get(f"/integrations/{iid}/insights", headers=headers).json()
    assert {r["date"] for r in rows} == {(today - dt.timedelta(days=3)).isoformat()}


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2025-13-01", "2025-12-31"),
        ("2025-02-30", "2025-03-01"),
        ("2025-1-1", "2025-01-31"),
        ("yesterday", "2025-01-31"),
        ("2025-03-02", "2025-03-01"),
        ("2024-01-01", "2025-07-04"),
    ],
)
def test_insights_reject_malformed_or_inverted_or_too_long_ranges(api: Api, start: str, end: str) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    resp = api.client.get(f"/integrations/{iid}/insights", params={"start": start, "end": end}, headers=headers)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_request"


def test_insights_accept_a_range_of_550_days(api: Api) -> None:
    _, headers = api.user()
    iid = api.connect(headers)
    end = dt.date(2025, 6, 30)
    start = end - dt.timedelta(days=549)
    resp = api.client.get(
        f"/integrations/{iid}/insights", params={"start": start.isoformat(), "end": end.isoformat()}, headers=headers
    )
    assert resp.status_code == 200
    early = api.client.get(f"/integrations/{iid}/insights", params={"end": "0001-01-05"}, headers=headers)
    assert (early.status_code, early.json()) == (200, [])


def test_delete_does_not_revoke_a_google_account_another_integration_uses(api: Api) -> None:
    """Revoking at Google ends the app's access for the whole Google account: two of our users sharing a
    Google login each have an integration, and one disconnecting must not break the other's."""
    shared = new_email("g")
    _, alice = api.user()
    _, bob = api.user()
    mine, theirs = api.connect(alice, shared), api.connect(bob, shared)
    assert mine != theirs
    revokes = api.google.fake.calls.get("revoke", 0)
    assert api.client.delete(f"/integrations/{mine}", headers=alice).status_code == 204
    assert load(api.c, mine).status == "disconnected"
    assert api.google.fake.calls.get("revoke", 0) == revokes
    assert api.c.tokens.ensure_fresh_token(theirs, 10**6)
    # The last integration on that account is revoked as before.
    assert api.client.delete(f"/integrations/{theirs}", headers=bob).status_code == 204
    assert api.google.fake.calls.get("revoke", 0) == revokes + 1
