"""The OAuth connection flow: a single-use state bound to the user, then the callback that completes it."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.bootstrap import Container
from common.connect import Connected, complete_connection
from common.errors import AccountMismatch, IntegrationNotFound, ProviderConfigError, ProviderError, ReauthRequired
from common.google_oauth import Pkce
from common.models import OAuthState, User, utcnow
from common.web_sessions import SignedIn

STATE_TTL = dt.timedelta(minutes=10)
MAX_OPEN_STATES = 20
MAX_STATE_LENGTH = 256

MSG_BAD_STATE = (
    "This connection link is invalid, has expired (links last 10 minutes) or was already used. "
    "Start the connection again from the app."
)
MSG_DENIED = (
    "Access was denied on Google's consent screen, so nothing was connected. "
    "Start the connection again and allow access to connect your Business Profile."
)
MSG_NO_CODE = "Google's answer carried no authorization code. Start the connection again."
MSG_MISSING_SCOPE = (
    "The permission to manage your Business Profile was not granted, so the integration cannot sync. "
    "Connect again and keep the Business Profile permission ticked on Google's consent screen."
)
MSG_BAD_CODE = "Google rejected the authorization code (it may have expired). Start the connection again."
MSG_GONE = "The integration to reconnect no longer exists."
MSG_RACE = "This Google account was being connected by another request at the same moment; it is connected."
MSG_CONFIG = "Google rejected this application's OAuth client; the operators have been alerted. Try again later."
MSG_OTHER_BROWSER = (
    "This connection was started by another account or in another browser, so nothing was connected. "
    "Sign in with your own account and connect from your Integrations page."
)
MSG_UNAVAILABLE = "Google could not be reached to finish the connection. Start the connection again in a moment."


class CallbackRejected(Exception):
    """The callback cannot complete; `message` is safe to show the user."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def state_hash(state: str) -> str:
    """States are stored only as their SHA-256, so a database reader cannot finish someone's flow."""
    return hashlib.sha256(state.encode()).hexdigest()


def start_authorization(
    c: Container,
    *,
    user_id: int,
    integration_id: int | None = None,
    login_hint: str | None = None,
    session_hash: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """Store a fresh state (PKCE verifier, user, optional integration to reconnect) and return Google's URL.

    `integration_id` makes the callback update that integration: the reconnect flow uses it.
    `session_hash` binds the state to the browser session that starts it: only that session can finish it.
    """
    now = now or utcnow()
    with c.sessions.begin() as s:
        state, pkce = add_state(s, user_id=user_id, integration_id=integration_id, session_hash=session_hash, now=now)
    return c.oauth.authorization_url(
        redirect_uri=c.settings.redirect_uri, state=state, pkce=pkce, login_hint=login_hint
    )


def add_state(
    s: Session,
    *,
    user_id: int,
    integration_id: int | None,
    now: dt.datetime,
    session_hash: str | None = None,
) -> tuple[str, Pkce]:
    """Add a 10-minute single-use state for `user_id` to `s`'s transaction; the state and its PKCE pair.

    A user holds at most MAX_OPEN_STATES open (unused, unexpired) states: the oldest beyond that are
    dropped, so a connect always works and only a flow abandoned 20 connects ago stops working. The
    user's row is locked so that concurrent connects of one user cannot each keep 20. A state made for
    a signed-in browser carries its `session_hash`: only that browser may finish the flow.
    """
    s.execute(select(User.id).where(User.id == user_id).with_for_update())
    stale = s.scalars(
        select(OAuthState.state_hash)
        .where(OAuthState.user_id == user_id, OAuthState.used_at.is_(None), OAuthState.expires_at > now)
        .order_by(OAuthState.created_at.desc(), OAuthState.state_hash)
        .offset(MAX_OPEN_STATES - 1)
    ).all()
    if stale:
        s.execute(delete(OAuthState).where(OAuthState.state_hash.in_(stale)))
    state, pkce = secrets.token_urlsafe(32), Pkce.new()
    s.add(
        OAuthState(
            state_hash=state_hash(state),
            user_id=user_id,
            integration_id=integration_id,
            code_verifier=pkce.verifier,
            created_at=now,
            expires_at=now + STATE_TTL,
            session_hash=session_hash,
        )
    )
    return state, pkce


def browser_problem(row: OAuthState, browser: SignedIn | None) -> CallbackRejected | None:
    """Why the browser finishing a flow may not (None when it may): it must be the flow's user and, when the
    flow is bound to a session, that very session. So an authorization URL sent to someone else cannot put
    their Google account into the sender's app account.
    """
    if row.awaiting_browser:
        return CallbackRejected(400, "invalid_state", MSG_BAD_STATE)
    if row.session_hash is not None:
        if browser is None or browser.session_hash != row.session_hash:
            return CallbackRejected(400, "session_mismatch", MSG_OTHER_BROWSER)
    elif browser is not None and browser.user_id is not None and browser.user_id != row.user_id:
        return CallbackRejected(400, "session_mismatch", MSG_OTHER_BROWSER)
    return None


@dataclass(frozen=True)
class Outcome:
    connected: Connected
    user_id: int


def finish_authorization(
    c: Container, *, state: str, code: str | None, error: str | None, browser: SignedIn | None = None
) -> Outcome:
    """Consume the state and complete the connection, committed; raises CallbackRejected.

    The state is marked used in the same transaction whatever the outcome (the connection itself
    runs in a savepoint), so a state is never honoured twice, even after a failed exchange.
    """
    if not state or len(state) > MAX_STATE_LENGTH:
        raise CallbackRejected(400, "invalid_state", MSG_BAD_STATE)
    now = utcnow()
    failure: CallbackRejected | None = None
    done: Connected | None = None
    with c.sessions.begin() as s:
        row = s.execute(
            select(OAuthState).where(OAuthState.state_hash == state_hash(state)).with_for_update()
        ).scalar_one_or_none()
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise CallbackRejected(400, "invalid_state", MSG_BAD_STATE)
        row.used_at = now
        user_id = row.user_id
        mismatch = browser_problem(row, browser)
        if mismatch is not None:
            failure = mismatch
        elif error:
            failure = _provider_refusal(error)
        elif not code:
            failure = CallbackRejected(400, "missing_code", MSG_NO_CODE)
        else:
            try:
                with s.begin_nested():
                    done = complete_connection(
                        s,
                        c.oauth,
                        c.cipher,
                        user_id=row.user_id,
                        code=code,
                        code_verifier=row.code_verifier,
                        redirect_uri=c.settings.redirect_uri,
                        now=now,
                        integration_id=row.integration_id,
                    )
            except (ProviderError, IntegrationNotFound) as exc:
                failure = _exchange_failure(exc)
            except AccountMismatch as exc:
                failure = CallbackRejected(
                    400,
                    "account_mismatch",
                    f"You {exc}. Reconnect with that account, or connect the new one separately.",
                )
            except IntegrityError:
                # Another callback stored the same Google account for this user a moment ago.
                failure = CallbackRejected(409, "concurrent_connection", MSG_RACE)
    if failure is not None:
        raise failure
    assert done is not None
    return Outcome(done, user_id)


def _provider_refusal(error: str) -> CallbackRejected:
    if error == "access_denied":
        return CallbackRejected(400, "access_denied", MSG_DENIED)
    shown = "".join(ch for ch in error[:64] if ch.isalnum() or ch in "_-.")
    return CallbackRejected(400, "provider_error", f"Google did not complete the sign-in ({shown}). Try again.")


def _exchange_failure(exc: Exception) -> CallbackRejected:
    if isinstance(exc, IntegrationNotFound):
        return CallbackRejected(400, "integration_gone", MSG_GONE)
    if isinstance(exc, ReauthRequired):
        if exc.reason == "missing_scope":
            return CallbackRejected(400, "missing_permission", MSG_MISSING_SCOPE)
        return CallbackRejected(400, "invalid_code", MSG_BAD_CODE)
    if isinstance(exc, ProviderConfigError):
        return CallbackRejected(502, "provider_config", MSG_CONFIG)
    return CallbackRejected(503, "provider_unavailable", MSG_UNAVAILABLE)
