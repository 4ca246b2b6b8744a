"""8. Access: constant-time key checks, no enumeration, OAuth state and reconnect-link abuse, no open redirect.

Tests never assert on timing: the constant-time property is checked on the code path (keys are looked up by
their SHA-256, the raw key never reaches the database, comparisons go through hmac.compare_digest).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from sqlalchemy import event, select, update
from starlette.testclient import TestClient

from common.errors import ReauthRequired
from common.models import Incident, Integration, OAuthState, User, utcnow
from common.reconnect_links import issue_link, make_signer
from common.signing import Signer
from common.users import KEY_PREFIX, create_user, hash_key
from services.browser import one_form
from tests.faults.evidence import figure
from tests.faults.lab import ADMIN_KEY, Lab
from tests.faults.scale import Scale
from tests.support.api import bearer, build_app, close, consent, start
from tests.support.flows import new_email

EVIL = "https://evil.example/steal"
JSON = {"Accept": "application/json"}


@dataclass
class Site:
    client: TestClient
    c: object
    lab: Lab

    def user(self) -> tuple[int, dict[str, str]]:
        user_id, key = create_user(self.c.sessions, new_email())
        self.lab.secrets.add(key)
        return user_id, bearer(key)

    def get(self, url: str, **kw) -> httpx.Response:
        return self.lab.record(self.client.get(url, follow_redirects=False, **kw))

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        return self.lab.record(self.client.request(method, url, follow_redirects=False, **kw))

    def connect(self, headers: dict[str, str], google_email: str | None = None) -> int:
        query = consent(start(self.client, headers, google_email or new_email("g")))
        resp = self.get("/oauth/google/callback", params=query)
        assert resp.status_code == 303, resp.text
        done = self.get(resp.headers["location"], headers=JSON)
        return int(done.json()["integration_id"])


@pytest.fixture(scope="module")
def app_site(shared_lab: Lab) -> Iterator[Site]:
    settings = shared_lab.settings(public_base_url="https://app.example.test")
    app, c = build_app(settings, shared_lab.amqp_url)
    try:
        with TestClient(app, base_url="https://app.example.test") as client:
            yield Site(client, c, shared_lab)
    finally:
        close(c)


@pytest.fixture
def site(app_site: Site, module_lab: Lab) -> Site:
    return app_site


def test_keys_are_looked_up_by_hash_and_compared_in_constant_time(
    scale: Scale, site: Site, monkeypatch: pytest.MonkeyPatch
):
    user_id, headers = site.user()
    key = headers["Authorization"].split(" ", 1)[1]
    compared: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a, b):  # every secret comparison of the request path goes through here
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    sent: list[str] = []
    listener = lambda *args: sent.append(repr(args[3]))  # noqa: E731 - the statement parameters
    event.listen(site.c.engine, "before_cursor_execute", listener)
    try:
        unknown = KEY_PREFIX + "A" * len(key[len(KEY_PREFIX) :])
        near = key[:-1] + ("A" if key[-1] != "A" else "B")  # all but the last character right
        answers = {
            name: site.get("/integrations", headers=bearer(k)).status_code
            for name, k in (("right", key), ("unknown", unknown), ("near", near), ("malformed", "x" * 40))
        }
        admin = site.get("/admin/token-health", headers=bearer(ADMIN_KEY[:-1])).status_code
    finally:
        event.remove(site.c.engine, "before_cursor_execute", listener)
    assert answers == {"right": 200, "unknown": 401, "near": 401, "malformed": 401} and admin == 401
    statements = "\n".join(sent)
    assert key not in statements and near not in statements, "a raw key never reaches the database"
    assert hash_key(key) in statements and hash_key(near) in statements, "keys are looked up by their SHA-256"
    # A found key and a malformed one end in a digest comparison (a miss is a hash lookup: no prefix to learn).
    assert len([p for p in compared if all(isinstance(x, str) and len(x) == 64 for x in p)]) >= 2
    assert any(isinstance(a, bytes) and len(a) == 32 for a, _ in compared), "admin key compared as digests"
    compared.clear()
    with pytest.raises(Exception):
        Signer("k1:" + "A" * 43 + "=", "done-page").verify("e30.AAAA")
    assert compared, "signatures are compared with hmac.compare_digest"
    with site.c.sessions() as s:
        assert s.get(User, user_id).api_key_hash == hashlib.sha256(key.encode()).hexdigest()


def test_nothing_tells_a_stranger_which_users_or_integrations_exist(scale: Scale, site: Site):
    _, owner = site.user()
    _, stranger = site.user()
    iid = site.connect(owner)
    missing = iid + 100_000
    for method, suffix in (("GET", ""), ("POST", "/sync"), ("POST", "/refresh"), ("GET", "/insights"), ("DELETE", "")):
        theirs = site.request(method, f"/integrations/{iid}{suffix}", headers=stranger)
        nobody = site.request(method, f"/integrations/{missing}{suffix}", headers=stranger)
        assert (
            (theirs.status_code, theirs.json())
            == (nobody.status_code, nobody.json())
            == (
                404,
                {"error": {"code": "not_found", "message": "No such integration."}},
            )
        ), (method, suffix)
    with site.c.sessions.begin() as s:  # a user whose key was replaced: their old key is just a wrong key
        gone_user, gone_key = create_user(site.c.sessions, new_email())
        site.lab.secrets.add(gone_key)
        s.execute(update(User).where(User.id == gone_user).values(api_key_hash="0" * 64))
    keys = [KEY_PREFIX + "B" * 43, "wrong", gone_key, "ik_", KEY_PREFIX + "x" * 150]
    answers = [site.get("/integrations", headers=bearer(k)) for k in keys]
    assert len({(r.status_code, r.text, r.headers.get("www-authenticate")) for r in answers}) == 1
    # A reconnect link aimed at another id looks the same whether that integration exists or not.
    link = urlsplit(_link(site, iid))
    other = _path_id(link, iid + 1)
    none = _path_id(link, missing)
    assert site.get(other).text.replace(str(iid + 1), "?") == site.get(none).text.replace(str(missing), "?")


def test_oauth_state_is_single_use_bound_and_expiring(scale: Scale, site: Site):
    _, headers = site.user()
    query = consent(start(site.client, headers))
    first = site.get("/oauth/google/callback", params=query)
    assert first.status_code == 303
    with site.c.sessions() as s:
        before = {r.id: r.refresh_token_enc for r in s.scalars(select(Integration))}
    replay = site.get("/oauth/google/callback", params=query, headers=JSON)
    assert (replay.status_code, replay.json()["error"]["code"]) == (400, "invalid_state")
    # A code from one flow with the state of another (login CSRF): PKCE binds the code to its own flow.
    a = consent(start(site.client, headers))
    b = consent(start(site.client, headers))
    crossed = site.get("/oauth/google/callback", params={"state": a["state"], "code": b["code"]}, headers=JSON)
    assert crossed.status_code == 400
    again = site.get("/oauth/google/callback", params={"state": a["state"], "code": a["code"]}, headers=JSON)
    assert again.json()["error"]["code"] == "invalid_state", "a state is spent even by a failed exchange"
    late = consent(start(site.client, headers))
    with site.c.sessions.begin() as s:
        s.execute(update(OAuthState).where(OAuthState.used_at.is_(None)).values(expires_at=utcnow()))
    expired = site.get("/oauth/google/callback", params=late, headers=JSON)
    assert expired.json()["error"]["code"] == "invalid_state"
    with site.c.sessions() as s:
        after = {r.id: r.refresh_token_enc for r in s.scalars(select(Integration))}
    assert after == before, "no replayed or crossed callback created or changed an integration"


def test_reconnect_links_cannot_be_replayed_stretched_or_altered(scale: Scale, site: Site, google):
    _, headers = site.user()
    google_email = new_email("g")
    iid = site.connect(headers, google_email)
    _break(site, google, google_email, iid)
    link = _link(site, iid)
    parts = urlsplit(link)
    token = parse_qs(parts.query)["token"][0]
    payload, sig = token.split(".")
    done_value = Signer(site.c.settings.token_encryption_keys.reveal(), "done-page").sign({"i": iid}, 600)
    for bad in (
        f"{payload[:-2]}{'AA' if payload[-2:] != 'AA' else 'BB'}.{sig}",  # altered payload
        f"{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",  # altered signature
        f"{payload}.",
        done_value,  # a genuine signature for another purpose
    ):
        resp = site.get(f"{parts.path}?token={quote(bad, safe='')}")
        assert resp.status_code == 400 and "Location" not in resp.headers, bad
    stale = _link(site, iid, ttl_seconds=-1)
    assert site.get(stale).status_code == 400 and "expired" in site.get(stale).text
    # What mail scanners and link previews do (HEAD, GET, again and again) shows the page and uses nothing.
    fetched = [site.request(method, link).status_code for method in ("HEAD", "GET") * 3]
    assert fetched == [200] * 6
    used = _press(site, link)
    assert used.status_code == 303
    replayed = _press_form(site, link, token)
    assert replayed.status_code == 400 and "already been used" in replayed.text
    assert site.get(link).status_code == 400 and site.request("HEAD", link).status_code == 400
    figure(f"8. access [{scale.name}]", link_fetches_before_use=len(fetched))


def test_no_redirect_goes_anywhere_the_request_chose(scale: Scale, site: Site, google):
    base = "https://app.example.test"
    google_auth = urlsplit(site.c.settings.google_auth_url)
    _, headers = site.user()
    url = start(site.client, headers, "x@example.com&redirect_uri=" + EVIL)
    assert parse_qs(urlsplit(url).query)["redirect_uri"] == [f"{base}/oauth/google/callback"]
    hostile = {"next": EVIL, "redirect": EVIL, "return_to": EVIL, "redirect_uri": EVIL, "continue": EVIL}
    hosts = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
    query = consent(start(site.client, headers))
    resp = site.get("/oauth/google/callback", params={**query, **hostile}, headers=hosts)
    location = urlsplit(resp.headers["location"])
    assert resp.status_code == 303 and (location.scheme, location.netloc, location.path) == (
        "https",
        "app.example.test",
        "/oauth/google/done",
    )
    done = site.get(resp.headers["location"] + "&" + "&".join(f"{k}={quote(v)}" for k, v in hostile.items()))
    assert done.status_code == 200 and "location" not in done.headers
    google_email = new_email("g")
    iid = site.connect(headers, google_email)
    _break(site, google, google_email, iid)
    page = site.get(_link(site, iid) + "&" + "&".join(f"{k}={quote(v)}" for k, v in hostile.items()), headers=hosts)
    assert page.status_code == 200 and "location" not in page.headers
    form = one_form(page.text, str(page.url))
    assert urlsplit(form.action)[:3] == ("https", "app.example.test", f"/integrations/{iid}/reconnect")
    resp = site.request("POST", form.action, data={**form.fields, **hostile}, headers=hosts)
    location = urlsplit(resp.headers["location"])
    assert resp.status_code == 303 and (location.scheme, location.netloc, location.path) == (
        google_auth.scheme,
        google_auth.netloc,
        google_auth.path,
    )
    assert parse_qs(location.query)["redirect_uri"] == [f"{base}/oauth/google/callback"]
    figure(f"8. access [{scale.name}]", open_redirects=0)


def _break(site: Site, google, google_email: str, iid: int) -> None:
    google.fake.revoke_user(google_email)
    with pytest.raises(ReauthRequired):
        site.c.tokens.refresh(iid, 10**9)


def _link(site: Site, iid: int, ttl_seconds: int = 7 * 86400) -> str:
    with site.c.sessions.begin() as s:
        incident = s.scalar(select(Incident.id).where(Incident.integration_id == iid))
        return issue_link(
            s,
            make_signer(site.c.settings.token_encryption_keys.reveal()),
            site.c.settings.public_base_url,
            integration_id=iid,
            incident_id=incident,
            now=utcnow() - (dt.timedelta(seconds=1) if ttl_seconds < 0 else dt.timedelta()),
            ttl_seconds=ttl_seconds,
        )


def _press(site: Site, link: str) -> httpx.Response:
    """Open the link's page and submit its one form, fields as given."""
    page = site.get(link)
    assert page.status_code == 200, page.text
    form = one_form(page.text, str(page.url))
    return site.request(form.method, form.action, data=form.fields)


def _press_form(site: Site, link: str, token: str) -> httpx.Response:
    """Submit the page's form again, as a second click or a replayed POST would."""
    return site.request("POST", urlsplit(link).path, data={"token": token})


def _path_id(link, iid: int) -> str:
    return f"/integrations/{iid}/reconnect?{link.query}"
