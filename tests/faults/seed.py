"""Many connected integrations, fast: real grants issued by the fake in-process, rows inserted in bulk.

Each integration gets a genuine grant at the fake (its consent and code exchange run through the fake's Python
API, without HTTP), its tokens encrypted exactly as the connect flow stores them, and an expiry inside the
refresh margin so every one of them is due.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import insert, text

from common.bootstrap import Container
from common.google_oauth import SCOPES
from common.models import ACTIVE, GOOGLE, OAUTH2, Integration, User
from common.users import KEY_PREFIX, hash_key
from services.fake_google import FakeGoogle
from services.fake_google.data import user_sub

REDIRECT = "http://127.0.0.1:8000/oauth/google/callback"


@dataclass(frozen=True)
class Seeded:
    id: int
    user_id: int
    owner_email: str
    google_email: str
    api_key: str


def grant(fake: FakeGoogle, google_email: str) -> dict[str, object]:
    """A consent and code exchange at the fake for `google_email`: the token endpoint's JSON answer."""
    status, location = fake.authorize(
        {
            "client_id": fake.client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "access_type": "offline",
            "prompt": "consent",
            "login_hint": google_email,
        }
    )
    assert status == 302 and isinstance(location, str), location
    code = parse_qs(urlsplit(location).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
    }
    status, body = fake.token(form, None)
    assert status == 200, body
    return body


def seed(c: Container, fake: FakeGoogle, n: int, *, per_user: int = 1, expires_in: float = 60) -> list[Seeded]:
    """`n` active integrations with real grants, `per_user` to a user; every token expires in `expires_in` s."""
    run = uuid.uuid4().hex[:8]
    now = dt.datetime.now(dt.UTC)
    users = [(f"owner-{run}-{u}@example.com", KEY_PREFIX + secrets.token_urlsafe(32)) for u in range(-(-n // per_user))]
    with c.sessions.begin() as s:
        user_ids = list(
            s.scalars(
                insert(User).returning(User.id, sort_by_parameter_order=True),
                [{"email": e, "api_key_hash": hash_key(k), "created_at": now} for e, k in users],
            )
        )
        ids = list(
            s.scalars(
                text("SELECT nextval(pg_get_serial_sequence('integrations', 'id')) FROM generate_series(1, :n)"),
                {"n": n},
            )
        )
    rows = []
    out = []
    for i, iid in enumerate(ids):
        google_email = f"g-{run}-{i}@example.com"
        body = grant(fake, google_email)
        owner, key = users[i // per_user]
        rows.append(
            {
                "id": iid,
                "user_id": user_ids[i // per_user],
                "platform": GOOGLE,
                "display_name": f"Google Business Profile ({google_email})",
                "status": ACTIVE,
                "auth_type": OAUTH2,
                "access_token_enc": c.cipher.encrypt(
                    str(body["access_token"]), integration_id=iid, field="access_token"
                ),
                "refresh_token_enc": c.cipher.encrypt(
                    str(body["refresh_token"]), integration_id=iid, field="refresh_token"
                ),
                "token_expires_at": now + dt.timedelta(seconds=expires_in),
                "granted_scopes": " ".join(sorted(str(body["scope"]).split())),
                "external_account_id": user_sub(google_email),
                "external_account_email": google_email,
                "needs_reauth": False,
                "refresh_failure_count": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        out.append(Seeded(iid, user_ids[i // per_user], owner, google_email, key))
    with c.sessions.begin() as s:
        for start in range(0, len(rows), 1000):
            s.execute(insert(Integration), rows[start : start + 1000])
    return out
