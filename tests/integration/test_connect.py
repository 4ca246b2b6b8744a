"""Completing a connection: one integration per Google account, reconnects bound to their account."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from common.connect import complete_connection
from common.errors import AccountMismatch, ReauthRequired
from common.google_oauth import BUSINESS_SCOPE
from tests.support.flows import REDIRECT, authorize, connect, load, new_email


def _complete(c, user_id, google_email, integration_id=None):
    code, pkce = authorize(c, google_email)
    with c.sessions.begin() as s:
        return complete_connection(
            s,
            c.oauth,
            c.cipher,
            user_id=user_id,
            code=code,
            code_verifier=pkce.verifier,
            redirect_uri=REDIRECT,
            now=dt.datetime.now(dt.UTC),
            integration_id=integration_id,
        )


def test_same_google_account_twice_is_one_integration(pg, google):
    email = new_email("g")
    iid = connect(pg, email)
    user_id = load(pg, iid).user_id
    again = _complete(pg, user_id, email)
    assert again.integration_id == iid and not again.created


def test_reconnect_with_another_google_account_is_refused_and_keeps_the_integration(pg, google):
    original = new_email("g")
    iid = connect(pg, original)
    before = load(pg, iid)
    google.fake.revoke_user(original)
    stranger = new_email("other")
    with pytest.raises(AccountMismatch) as err:
        _complete(pg, before.user_id, stranger, integration_id=iid)
    assert original in str(err.value)
    after = load(pg, iid)
    assert after.external_account_id == before.external_account_id
    assert after.external_account_email == original
    assert after.refresh_token_enc == before.refresh_token_enc
    # The stranger's grant was handed back to Google rather than left dangling.
    assert google.fake.stats()["calls"].get("revoke", 0) == 1


def test_missing_business_scope_is_refused(pg, google):
    google.fake.grant_scopes(["openid", "email"])
    with pytest.raises(ReauthRequired) as err:
        connect(pg)
    assert err.value.reason == "missing_scope"


def test_a_stray_grant_of_an_account_connected_elsewhere_is_not_revoked(pg, google):
    """Revoking a token at Google ends the app's access for that whole Google account: a user who picks
    another account they also connected, in the reconnect's account chooser, must not break that one."""
    first, second = new_email("g"), new_email("g")
    iid = connect(pg, first)
    user_id = load(pg, iid).user_id
    other = connect(pg, second, user_id=user_id)
    revokes = google.fake.stats()["calls"].get("revoke", 0)
    with pytest.raises(AccountMismatch):
        _complete(pg, user_id, second, integration_id=iid)
    assert google.fake.stats()["calls"].get("revoke", 0) == revokes
    assert pg.tokens.ensure_fresh_token(other, 10**6)  # the other integration still refreshes
    assert google.fake.refresh_calls_for(second) == 1


def test_connects_without_an_id_token_never_merge_two_google_accounts(pg, google):
    """ARCHITECTURE.md's token answer has no id_token: without one the account is unknown, and a second
    connection (of another account, for all we know) must not overwrite the first one's tokens."""
    user_id = load(pg, connect(pg)).user_id
    ids, before = [], None
    for n in (1, 2):
        google.fake.fail_next(
            "token",
            200,
            body=json.dumps(
                {
                    "access_token": f"ya29.no-id-{n}",
                    "refresh_token": f"1//no-id-{n}",
                    "expires_in": 3599,
                    "token_type": "Bearer",
                    "scope": f"openid email {BUSINESS_SCOPE}",
                }
            ),
        )
        done = _complete(pg, user_id, new_email("g"))
        assert done.created
        ids.append(done.integration_id)
        before = before or load(pg, ids[0]).refresh_token_enc
    assert len(set(ids)) == 2
    assert load(pg, ids[0]).refresh_token_enc == before
