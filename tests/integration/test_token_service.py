"""ensure_fresh_token against the fake Google over HTTP, on PostgreSQL and SQLite: every failure state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update
from structlog.testing import capture_logs

from common.bootstrap import Container
from common.errors import (
    AccessTokenRejected,
    CipherError,
    IntegrationInactive,
    IntegrationNotFound,
    LockTimeout,
    ProviderConfigError,
    QuotaExceeded,
    ReauthRequired,
    TransientProviderError,
)
from common.events import Event, IncidentClosed, IncidentOpened
from common.google_oauth import (
    MSG_INVALID_GRANT,
    MSG_INVALID_RAPT,
    MSG_MISSING_SCOPE,
    MSG_NO_REFRESH_TOKEN,
    GoogleOAuthClient,
    GoogleOAuthConfig,
    Pkce,
)
from common.models import DISCONNECTED, Incident, Integration
from common.token_service import TokenService, mark_failed
from services.api.disconnect import disconnect
from services.fake_google import FakeGoogleServer
from tests.support.concurrency import lock_waiters, run_in_thread
from tests.support.flows import REDIRECT, connect, expire_soon, load, new_email
from tests.support.polling import wait_for


@pytest.fixture(params=["pg", "lite"])
def c(request: pytest.FixtureRequest) -> Container:
    return request.getfixturevalue(request.param)


class Recorder:
    """A publisher that checks each event's cause was committed before it was published."""

    def __init__(self, c: Container) -> None:
        self.c = c
        self.events: list[Event] = []

    def __call__(self, events: Sequence[Event]) -> None:
        for event in events:
            with self.c.sessions() as s:
                incident = s.get(Incident, event.incident_id)
                assert incident is not None, "published before commit"
                assert (incident.closed_at is None) == isinstance(event, IncidentOpened), "published before commit"
            self.events.append(event)


def service(c: Container, **over: Any) -> tuple[TokenService, Recorder]:
    rec = Recorder(c)
    return replace(c.tokens, publish=rec, **over), rec


def oauth_client(c: Container, **over: Any) -> GoogleOAuthClient:
    s = c.settings
    cfg = GoogleOAuthConfig(
        client_id=s.google_client_id,
        client_secret=s.google_client_secret.reveal(),
        auth_url=s.google_auth_url,
        token_url=s.google_token_url,
        revoke_url=s.google_revoke_url,
        timeout_seconds=s.http_timeout_seconds,
    )
    return GoogleOAuthClient(replace(cfg, **over))


def snapshot(c: Container, iid: int) -> dict[str, Any]:
    table = Integration.__table__
    with c.engine.connect() as conn:
        return dict(conn.execute(select(table).where(table.c.id == iid)).mappings().one())


def incidents(c: Container, iid: int) -> list[Incident]:
    with c.sessions() as s:
        return list(s.scalars(select(Incident).where(Incident.integration_id == iid).order_by(Incident.id)))


def set_column(c: Container, iid: int, **values: Any) -> None:
    with c.sessions.begin() as s:
        s.execute(update(Integration).where(Integration.id == iid).values(**values))


def expiring(c: Container, google: FakeGoogleServer) -> tuple[int, str]:
    email = new_email("g")
    iid = connect(c, google_email=email)
    expire_soon(c, iid)
    return iid, email


# --- ReauthRequired: only the user can fix it -----------------------------------------------------------


def revoke_grant(c: Container, google: FakeGoogleServer, iid: int, email: str) -> None:
    google.fake.revoke_user(email)


def workspace_policy(c: Container, google: FakeGoogleServer, iid: int, email: str) -> None:
    google.fake.set_grant_error(email, "invalid_rapt")


def drop_refresh_token(c: Container, google: FakeGoogleServer, iid: int, email: str) -> None:
    set_column(c, iid, refresh_token_enc=None)


def narrow_grant(c: Container, google: FakeGoogleServer, iid: int, email: str) -> None:
    """Replace the stored refresh token with one whose grant lacks the Business Profile scope."""
    google.fake.grant_scopes(["openid", "email"])
    pkce = Pkce.new()
    url = c.oauth.authorization_url(redirect_uri=REDIRECT, state="s", pkce=pkce, login_hint=email)
    code = parse_qs(urlsplit(c.http.get(url).headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": pkce.verifier, "redirect_uri": REDIRECT}
    form |= {"client_id": c.settings.google_client_id, "client_secret": c.settings.google_client_secret.reveal()}
    refresh_token = c.http.post(c.settings.google_token_url, data=form).json()["refresh_token"]
    set_column(c, iid, refresh_token_enc=c.cipher.encrypt(refresh_token, integration_id=iid, field="refresh_token"))


@pytest.mark.parametrize(
    ("breaks", "reason", "message", "calls"),
    [
        (revoke_grant, "invalid_grant", MSG_INVALID_GRANT, 1),
        (workspace_policy, "invalid_rapt", MSG_INVALID_RAPT, 1),
        (drop_refresh_token, "no_refresh_token", MSG_NO_REFRESH_TOKEN, 0),
        (narrow_grant, "missing_scope", MSG_MISSING_SCOPE, 1),
    ],
    ids=["invalid_grant", "invalid_rapt", "no_refresh_token", "missing_scope"],
)
def test_reauth_required_marks_the_integration_and_opens_one_incident(
    c: Container, google: FakeGoogleServer, breaks: Any, reason: str, message: str, calls: int
) -> None:
    iid, email = expiring(c, google)
    breaks(c, google, iid, email)
    tokens, rec = service(c)
    with pytest.raises(ReauthRequired) as err:
        tokens.ensure_fresh_token(iid, 300)
    assert (err.value.reason, err.value.message) == (reason, message)
    row = load(c, iid)
    assert row.last_sync_status == "error" and row.last_sync_message == message
    assert (row.needs_reauth, row.error_kind, row.error_reason) == (True, "reauth_required", reason)
    assert row.status == "active" and row.refresh_failure_count == 1 and row.last_refresh_failed_at is not None
    [incident] = incidents(c, iid)
    assert incident.closed_at is None and (incident.kind, incident.reason) == ("reauth_required", reason)
    assert rec.events == [IncidentOpened(iid, incident.id, "reauth_required", reason)]
    assert google.fake.refresh_calls_for(email) == calls

    with pytest.raises(ReauthRequired):
        tokens.ensure_fresh_token(iid, 300)
    assert len(incidents(c, iid)) == 1 and len(rec.events) == 1, "one incident, one notification"
    assert load(c, iid).refresh_failure_count == 2


def test_success_after_an_error_clears_it_and_closes_the_incident(c: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(c, google)
    tokens, rec = service(c)
    google.fake.set_grant_error(email, "invalid_rapt")
    with pytest.raises(ReauthRequired):
        tokens.ensure_fresh_token(iid, 300)
    google.fake.set_grant_error(email, None)  # the user signed in again under the Workspace policy
    token = tokens.ensure_fresh_token(iid, 300)
    row = load(c, iid)
    assert (row.last_sync_status, row.last_sync_message, row.needs_reauth, row.error_kind, row.error_reason) == (
        None,
        None,
        False,
        None,
        None,
    )
    assert row.refresh_failure_count == 0
    [incident] = incidents(c, iid)
    assert incident.closed_at is not None
    assert rec.events == [
        IncidentOpened(iid, incident.id, "reauth_required", "invalid_rapt"),
        IncidentClosed(iid, incident.id, "reauth_required"),
    ]
    assert list(c.gbp.accounts(token))


def test_reconnecting_after_a_revocation_repairs_the_same_integration(c: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(c, google)
    user_id = load(c, iid).user_id
    google.fake.revoke_user(email)
    with pytest.raises(ReauthRequired):
        c.tokens.ensure_fresh_token(iid, 300)
    assert connect(c, google_email=email, user_id=user_id) == iid
    row = load(c, iid)
    assert not row.needs_reauth and row.error_kind is None and row.last_sync_status is None
    assert all(i.closed_at is not None for i in incidents(c, iid))
    assert list(c.gbp.accounts(c.tokens.ensure_fresh_token(iid, 300)))


# --- ProviderConfigError: operators must act --------------------------------------------------------------


def test_wrong_client_secret_is_an_operator_error_not_a_reauth(c: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(c, google)
    tokens, rec = service(c, oauth=oauth_client(c, client_secret="rotated-away"))
    with capture_logs() as logs, pytest.raises(ProviderConfigError) as err:
        tokens.ensure_fresh_token(iid, 300)
    assert err.value.reason == "invalid_client"
    row = load(c, iid)
    assert (row.last_sync_status, row.needs_reauth, row.error_kind, row.error_reason) == (
        "error",
        False,
        "provider_config",
        "invalid_client",
    )
    assert "GOOGLE_CLIENT_ID/SECRET" in (row.last_sync_message or "")
    [failed] = [e for e in logs if e["event"] == "token.refresh.failed"]
    assert failed["log_level"] == "error" and failed["operator_action_required"] is True
    assert (failed["integration_id"], failed["error_kind"], failed["reason"]) == (
        iid,
        "provider_config",
        "invalid_client",
    )
    assert failed["platform"] == "google" and failed["duration_ms"] >= 0
    [incident] = incidents(c, iid)
    assert incident.kind == "provider_config" and len(rec.events) == 1
    assert google.fake.refresh_calls_for(email) == 1


@pytest.mark.parametrize("status", ["unauthorized_client", "deleted_client"])
def test_disabled_client_is_an_operator_error(c: Container, google: FakeGoogleServer, status: str) -> None:
    iid, _ = expiring(c, google)
    google.fake.set_client_status(status)
    with pytest.raises(ProviderConfigError):
        c.tokens.ensure_fresh_token(iid, 300)
    row = load(c, iid)
    assert (row.needs_reauth, row.error_kind, row.error_reason) == (False, "provider_config", status)


# --- TransientProviderError: retried by the caller, nothing changes ------------------------------------------


def outage(google: FakeGoogleServer) -> None:
    google.fake.fail_next("token", 503)


def rate_limited(google: FakeGoogleServer) -> None:
    google.fake.fail_next("token", 429, retry_after=30)


def garbage(google: FakeGoogleServer) -> None:
    google.fake.fail_next("token", 200, body="<html>upstream connect error</html>")


def hang(google: FakeGoogleServer) -> None:
    google.fake.hang_next("token", 1.0)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(outage, "http_503"), (rate_limited, "rate_limited"), (garbage, "bad_response"), (hang, "timeout")],
    ids=["503", "429", "garbage", "timeout"],
)
def test_transient_failures_leave_everything_unchanged(
    c: Container, google: FakeGoogleServer, fault: Any, reason: str
) -> None:
    iid, email = expiring(c, google)
    tokens, rec = service(c, oauth=oauth_client(c, timeout_seconds=0.3))
    before = snapshot(c, iid)
    fault(google)
    with capture_logs() as logs, pytest.raises(TransientProviderError) as err:
        tokens.ensure_fresh_token(iid, 300)
    assert err.value.reason == reason
    if reason == "rate_limited":  # pacing (rule 8): deferred by the worker, not a failure
        assert isinstance(err.value, QuotaExceeded) and err.value.retry_after == 30
    assert snapshot(c, iid) == before
    assert incidents(c, iid) == [] and rec.events == []
    failed = [e for e in logs if e["event"] == "token.refresh.failed"]
    if reason == "rate_limited":
        assert failed == []
    else:
        [one] = failed
        assert one["log_level"] == "warning" and one["error_kind"] == "transient" and one["reason"] == reason
    # The hung request still reaches the fake later; wait for it so it cannot count in another test.
    wait_for(lambda: google.fake.refresh_calls_for(email) >= 1, 10, "the hung request to reach the fake")
    token = tokens.ensure_fresh_token(iid, 300)
    assert list(c.gbp.accounts(token))


def test_exhausted_retries_show_the_error_without_reauth(c: Container, google: FakeGoogleServer) -> None:
    iid, _ = expiring(c, google)
    google.fake.fail_next("token", 503)
    with pytest.raises(TransientProviderError) as err:
        c.tokens.ensure_fresh_token(iid, 300)
    c.tokens.record_transient_failure(iid, err.value)
    row = load(c, iid)
    assert (row.last_sync_status, row.needs_reauth, row.error_kind, row.error_reason) == (
        "error",
        False,
        "transient",
        "http_503",
    )
    assert incidents(c, iid) == []
    c.tokens.ensure_fresh_token(iid, 300)
    row = load(c, iid)
    assert row.last_sync_status is None and row.error_kind is None


@pytest.mark.parametrize("failure", ["transient", "undecryptable"])
def test_recording_a_failure_waits_for_a_running_refresh_and_keeps_its_reauth(
    pg: Container, google: FakeGoogleServer, failure: str
) -> None:
    """Recording exhausted retries or an undecryptable token takes the row lock: a refresh that finds the
    grant revoked meanwhile is not overwritten with a stale read."""
    iid, _ = expiring(pg, google)

    def record() -> None:
        if failure == "transient":
            pg.tokens.record_transient_failure(iid, TransientProviderError("http_503", "Google is down (503)"))
        else:
            pg.tokens.record_cipher_failure(iid, CipherError("access_token of integration: key 'gone' missing"))

    with pg.sessions.begin() as holder:  # a refresh in progress, holding the lock, about to meet invalid_grant
        row = holder.execute(select(Integration).where(Integration.id == iid).with_for_update()).scalar_one()
        worker, outcome = run_in_thread(record)
        wait_for(lambda: lock_waiters(pg) >= 1, what="the recorder waiting for the row lock")
        mark_failed(row, ReauthRequired("invalid_grant", MSG_INVALID_GRANT), row.updated_at)
    worker.join(30)
    assert outcome == [None]
    row = load(pg, iid)
    assert (row.needs_reauth, row.error_kind, row.error_reason, row.last_sync_message) == (
        True,
        "reauth_required",
        "invalid_grant",
        MSG_INVALID_GRANT,
    )


@pytest.mark.parametrize("failure", ["transient", "undecryptable"])
def test_a_failure_recorded_after_a_disconnect_leaves_the_row_alone(
    c: Container, google: FakeGoogleServer, failure: str
) -> None:
    """A worker's last retry failed, then the user disconnected before the worker recorded it: the
    disconnected integration shows no error (DELETE /integrations/{id} ran between the two)."""
    iid, _ = expiring(c, google)
    disconnect(c, load(c, iid).user_id, iid)
    before = snapshot(c, iid)
    if failure == "transient":
        c.tokens.record_transient_failure(iid, TransientProviderError("http_503", "Google is down (503)"))
    else:
        c.tokens.record_cipher_failure(iid, CipherError("access_token of integration: key 'gone' missing"))
    assert snapshot(c, iid) == before


# --- the happy paths ---------------------------------------------------------------------------------------


def test_a_fresh_token_is_returned_without_a_provider_call(c: Container, google: FakeGoogleServer) -> None:
    email = new_email("g")
    iid = connect(c, google_email=email)
    token = c.tokens.ensure_fresh_token(iid, 300)
    assert token == c.tokens.ensure_fresh_token(iid, 300)
    assert google.fake.refresh_calls_for(email) == 0
    assert list(c.gbp.accounts(token))


def test_an_expiring_token_is_refreshed_and_stored(c: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(c, google)
    before = load(c, iid)
    with capture_logs() as logs:
        token = c.tokens.ensure_fresh_token(iid, 300)
    after = load(c, iid)
    assert google.fake.refresh_calls_for(email) == 1
    assert after.token_expires_at is not None and before.token_expires_at is not None
    assert after.token_expires_at > before.token_expires_at
    assert after.access_token_enc != before.access_token_enc
    kept = [
        c.cipher.decrypt(r.refresh_token_enc or "", integration_id=iid, field="refresh_token") for r in (before, after)
    ]
    assert kept[0] == kept[1], "Google sent no new refresh token: keep ours"
    assert c.cipher.decrypt(after.access_token_enc or "", integration_id=iid, field="access_token") == token
    assert after.last_refreshed_at is not None
    [done] = [e for e in logs if e["event"] == "token.refresh.succeeded"]
    assert done["integration_id"] == iid and done["expires_at"] == after.token_expires_at.isoformat()
    assert list(c.gbp.accounts(token))


def test_a_rejected_token_is_replaced_once(c: Container, google: FakeGoogleServer) -> None:
    email = new_email("g")
    iid = connect(c, google_email=email)
    token = c.tokens.ensure_fresh_token(iid, 300)
    google.fake.expire_access_tokens(email)  # Google revoked the access token early; expiry looks fine to us
    with pytest.raises(AccessTokenRejected):
        list(c.gbp.accounts(token))
    fresh = c.tokens.ensure_fresh_token(iid, 300, rejected_token=token)
    assert fresh != token and google.fake.refresh_calls_for(email) == 1
    assert list(c.gbp.accounts(fresh))
    # A second worker that saw the same 401 gets the replacement without another provider call.
    assert c.tokens.ensure_fresh_token(iid, 300, rejected_token=token) == fresh
    assert google.fake.refresh_calls_for(email) == 1


def test_refresh_skips_tokens_that_are_not_due(c: Container, google: FakeGoogleServer) -> None:
    email = new_email("g")
    iid = connect(c, google_email=email)
    assert c.tokens.refresh(iid, 60) is False
    assert google.fake.refresh_calls_for(email) == 0
    before = load(c, iid).token_expires_at
    assert c.tokens.refresh(iid, 86400) is True
    assert google.fake.refresh_calls_for(email) == 1
    after = load(c, iid).token_expires_at
    assert before is not None and after is not None and after >= before
    assert c.tokens.refresh(iid, 60) is False
    assert google.fake.refresh_calls_for(email) == 1


def test_a_disconnected_integration_is_never_refreshed(c: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(c, google)
    set_column(c, iid, status=DISCONNECTED)
    with pytest.raises(IntegrationInactive):
        c.tokens.ensure_fresh_token(iid, 300)
    with pytest.raises(IntegrationInactive):
        c.tokens.ensure_fresh_token(iid, 300, rejected_token="ya29.anything")
    with pytest.raises(IntegrationInactive):
        c.tokens.refresh(iid, 86400)
    assert google.fake.refresh_calls_for(email) == 0


def test_an_unknown_integration_is_not_found(c: Container) -> None:
    with pytest.raises(IntegrationNotFound):
        c.tokens.ensure_fresh_token(10**9, 300)
    with pytest.raises(IntegrationNotFound):
        c.tokens.refresh(10**9, 300)


def test_a_held_lock_times_out_instead_of_hanging(pg: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(pg, google)
    tokens, _ = service(pg, lock_timeout_seconds=0.5)
    with pg.sessions.begin() as holder:
        holder.execute(select(Integration).where(Integration.id == iid).with_for_update()).scalar_one()
        worker, outcome = run_in_thread(lambda: tokens.ensure_fresh_token(iid, 300))
        worker.join(15)  # a deadline, not a timing assertion: without lock_timeout this would wait forever
        assert not worker.is_alive(), "ensure_fresh_token waited on the lock without a timeout"
    [error] = outcome
    assert isinstance(error, LockTimeout) and str(iid) in str(error)
    assert google.fake.refresh_calls_for(email) == 0
    assert list(pg.gbp.accounts(tokens.ensure_fresh_token(iid, 300)))


def test_a_held_lock_times_out_on_sqlite_too(lite: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(lite, google)
    tokens, _ = service(lite, lock_timeout_seconds=0.5)
    with lite.sessions.begin() as holder:  # SQLite's lock: another writer's open transaction
        holder.execute(update(Integration).where(Integration.id == iid).values(display_name="busy"))
        worker, outcome = run_in_thread(lambda: tokens.ensure_fresh_token(iid, 300))
        worker.join(15)  # a deadline, not a timing assertion
        assert not worker.is_alive(), "ensure_fresh_token waited on SQLite's lock without lock_timeout_seconds"
    [error] = outcome
    assert isinstance(error, LockTimeout) and str(iid) in str(error)
    assert google.fake.refresh_calls_for(email) == 0
    assert list(lite.gbp.accounts(tokens.ensure_fresh_token(iid, 300)))


# --- A token no configured key decrypts: operators must act ----------------------------------------------


def test_a_token_no_key_decrypts_marks_the_row_for_operators_and_the_restored_key_clears_it(
    c: Container, google: FakeGoogleServer
) -> None:
    from common.cipher import TokenCipher, generate_key_spec
    from common.health import unhealthy_integrations
    from common.sync_service import sync_integration
    from common.token_service import MSG_UNDECRYPTABLE

    iid, email = expiring(c, google)
    # The key the tokens were written with left TOKEN_ENCRYPTION_KEYS too early.
    without_key, rec = service(c, cipher=TokenCipher.from_spec(generate_key_spec("other")))
    for attempt in (lambda: without_key.ensure_fresh_token(iid, 300), lambda: without_key.refresh(iid, 86400)):
        with capture_logs() as logs, pytest.raises(CipherError, match="'test1'"):
            attempt()
        [failed] = [e for e in logs if e["event"] == "token.decrypt.failed"]
        assert failed["log_level"] == "error" and failed["operator_action_required"] is True
        assert failed["integration_id"] == iid and "'test1'" in failed["message"]
        row = load(c, iid)
        assert (row.last_sync_status, row.error_kind, row.error_reason, row.needs_reauth) == (
            "error",
            "provider_config",
            "undecryptable",
            False,
        )
        assert row.last_sync_message == MSG_UNDECRYPTABLE
    assert incidents(c, iid) == [] and rec.events == []  # no user email: reconnecting is not the fix
    assert google.fake.refresh_calls_for(email) == 0
    with c.sessions() as s:
        assert iid in [r.id for r, _ in unhealthy_integrations(s)]

    # The key is back: the next sync refreshes (the token is expiring), syncs and clears the state.
    sync_integration(c, iid)
    row = load(c, iid)
    assert (row.last_sync_status, row.error_kind, row.error_reason, row.last_sync_message) == (
        "success",
        None,
        None,
        None,
    )
    assert google.fake.refresh_calls_for(email) == 1


def test_a_broken_oauth_client_does_not_hide_a_pending_reauth(c: Container, google: FakeGoogleServer) -> None:
    iid, email = expiring(c, google)
    google.fake.revoke_user(email)
    with pytest.raises(ReauthRequired):
        c.tokens.ensure_fresh_token(iid, 300)
    before = load(c, iid)
    assert before.needs_reauth and before.error_kind == "reauth_required"

    broken, _ = service(c, oauth=oauth_client(c, client_secret="rotated-away"))
    with pytest.raises(ProviderConfigError):
        broken.refresh(iid, 86400)
    after = load(c, iid)
    # The grant is still gone whatever our client's state: the user must still reconnect, and sees why.
    assert (after.needs_reauth, after.error_kind, after.error_reason, after.last_sync_message) == (
        True,
        "reauth_required",
        before.error_reason,
        MSG_INVALID_GRANT,
    )
    assert after.refresh_failure_count == before.refresh_failure_count + 1
