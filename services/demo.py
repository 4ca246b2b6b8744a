"""`make demo`: the whole system in one process, walked through its job in under a minute.

Connect a Google Business Profile account through the real OAuth redirect flow (against the built-in fake
Google), sync it, let its token near expiry, run refresh-all, revoke the grant at Google, watch the nightly
run mark it, read the email, follow its one-click reconnect link. Exit 0, or non-zero naming the failed step.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from common.logging import configure_logging
from common.models import Integration, Location
from common.tasks import REFRESH_ALL, send
from common.users import create_user
from services.browser import one_form
from services.standalone import System, start_system

DEMO_DIR = Path("var/demo")
GOOGLE_USER = "owner@acme-bakery.example"


DEMO_EMAIL = "demo@example.com"


class StepFailed(Exception):
    pass


class Demo:
    def __init__(self, system: System, *, serve: bool = False) -> None:
        self.serve = serve
        self.system = system
        self.fake = system.fake_google.fake if system.fake_google else None
        self.api = httpx.Client(base_url=system.api_url, timeout=15)
        self.browser = httpx.Client(timeout=15, follow_redirects=False)
        self.key = ""
        self.integration_id = 0
        self.step_no = 0

    # -- helpers -------------------------------------------------------------------------------
    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n[{self.step_no}] {title}", flush=True)

    @staticmethod
    def say(text: str) -> None:
        print(f"    {text}", flush=True)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}")

    def get_integration(self) -> dict[str, Any]:
        resp = self.api.get(f"/integrations/{self.integration_id}", headers=self.auth)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def browser_oauth(self, start_url: str) -> httpx.Response:
        """Follow redirects like a browser through Google's consent and back to our callback."""
        return self.follow(self.browser.get(start_url))

    def follow(self, resp: httpx.Response) -> httpx.Response:
        for _ in range(6):
            if resp.status_code not in (302, 303):
                return resp
            location = resp.headers["location"]
            resp = self.browser.get(location if location.startswith("http") else self.system.api_url + location)
        raise StepFailed("too many redirects in the OAuth flow")

    def mails(self) -> list[Path]:
        """The notifier's emails about the integration (sign-in emails aside)."""
        return [p for p in self.all_mails() if not p.name.startswith("sign-in-")]

    def all_mails(self) -> list[Path]:
        return sorted((Path(self.system.settings.var_dir) / "mail").glob("*.eml"))

    def sign_in_browser(self, address: str) -> None:
        """The person signs in on the web page: asks for a link, opens the email, presses the button."""
        before = set(self.all_mails())
        url = self.system.api_url
        resp = self.browser.post(f"{url}/sign-in", data={"email": address})
        if resp.status_code != 200:
            raise StepFailed(f"the sign-in form answered HTTP {resp.status_code}")
        path: Path = self.wait_for(
            "the sign-in email", lambda: [p for p in self.all_mails() if p not in before and "sign-in-" in p.name]
        )[0]
        link = _link(_read_mail(path), r"https?://\S+/sign-in/link\?token=\S+", "sign-in")
        page = self.browser.get(link)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        if page.status_code != 200 or not token:
            raise StepFailed(f"the sign-in link's page answered HTTP {page.status_code}")
        done = self.browser.post(f"{url}/sign-in/link", data={"token": html.unescape(token.group(1))})
        if done.status_code != 303:
            raise StepFailed(f"signing in answered HTTP {done.status_code}")
        self.say(f"the browser signed in as {address} from the emailed link ({path})")

    # -- the walkthrough -----------------------------------------------------------------------
    def run(self) -> None:
        self.step("Create a demo user and API key")
        _uid, self.key = create_user(self.system.container.sessions, DEMO_EMAIL)
        self.say(f"user {DEMO_EMAIL}, API key {self.key[:10]}… (shown once, stored hashed)")

        self.step("Connect Google Business Profile through the OAuth redirect flow (PKCE, offline access)")
        self.sign_in_browser(DEMO_EMAIL)
        resp = self.api.post("/integrations/google/connect", headers=self.auth, json={"login_hint": GOOGLE_USER})
        resp.raise_for_status()
        auth_url = resp.json()["authorization_url"]
        self.say(f"authorization_url → {auth_url.split('?')[0]} (consent as {GOOGLE_USER})")
        page = self.browser_oauth(auth_url)
        if page.status_code != 200:
            raise StepFailed(f"the OAuth callback ended with HTTP {page.status_code}: {page.text[:200]}")
        listed = self.api.get("/integrations", headers=self.auth).json()
        if len(listed) != 1:
            raise StepFailed(f"expected one integration after connecting, found {len(listed)}")
        self.integration_id = listed[0]["id"]
        self.say(f"integration {self.integration_id} '{listed[0]['display_name']}' stored, tokens encrypted")

        self.step("Initial sync (the connected event, handled by a worker)")
        self.wait_for("the initial sync", lambda: self.get_integration()["last_sync_status"] == "success")
        with self.system.container.sessions() as s:
            locations = s.query(Location).filter_by(integration_id=self.integration_id).count()
        today = dt.date.today()
        start = (today - dt.timedelta(days=120)).isoformat()
        insights = self.api.get(
            f"/integrations/{self.integration_id}/insights",
            params={"start": start, "end": today.isoformat()},
            headers=self.auth,
        ).json()
        self.say(f"{locations} locations, {len(insights)} daily values stored")

        self.step("The access token nears expiry; a sync refreshes it first")
        before = self._expire_soon(seconds=120)
        calls = self.fake.total_refresh_calls if self.fake else 0
        synced_before = self.get_integration()["last_synced_at"]
        resp = self.api.post(f"/integrations/{self.integration_id}/sync", headers=self.auth)
        self.say(f"POST /integrations/{self.integration_id}/sync → {resp.status_code} {resp.json()}")
        after = self.wait_for(
            "the sync", lambda: (i := self.get_integration())["last_synced_at"] != synced_before and i
        )
        self.say(f"token_expires_at {before} (in 2 minutes, inside the 5-minute margin)")
        self.say(f"              → {after['token_expires_at'][:19]}+00:00 (refreshed, then synced)")
        if self.fake:
            self.say(f"refresh calls at Google: {self.fake.total_refresh_calls - calls}")

        self.step("refresh-all (what the nightly job and `make refresh` publish)")
        self._expire_soon(seconds=3000)
        calls = self.fake.total_refresh_calls if self.fake else 0
        assert self.system.broker is not None
        send(self.system.broker, REFRESH_ALL, 86400)
        if self.fake:
            fake = self.fake
            self.wait_for("the refresh", lambda: fake.total_refresh_calls > calls)
            self.say(f"1 integration due within 24 h, refreshed ({fake.total_refresh_calls - calls} call)")

        self.step("The user revokes our access in their Google account")
        if self.fake:
            self.say(f"grants revoked at Google: {self.fake.revoke_user(GOOGLE_USER)}")

        self.step("The nightly refresh-all (02:00; sent now, as `make refresh` does) meets the revoked grant")
        self._expire_soon(seconds=3000)
        # No `scheduled_at`: a scheduled message carries a run key (job + minute), and the scheduler in this
        # process may own that key already (its start-up catch-up, or a real 02:00 fire during the demo),
        # which would make this message a duplicate that the worker drops.
        send(self.system.broker, REFRESH_ALL, 86400)
        broken: dict[str, Any] = self.wait_for(
            "the error state", lambda: (i := self.get_integration())["needs_reauth"] and i
        )
        self.say(
            f"last_sync_status={broken['last_sync_status']} error_kind={broken['error_kind']} "
            f"needs_reauth={broken['needs_reauth']}"
        )
        self.say(f"message: {broken['last_sync_message']}")

        self.step("The user gets one email, with a one-click reconnect link")
        path: Path = self.wait_for("the email", lambda: (m := self.mails()) and m[0])
        mail = _read_mail(path)
        self.say(f"{path}  Subject: {mail['Subject']}  To: {mail['To']}")
        link = _reconnect_link(mail)
        self.say(f"link: {link.split('?')[0]}?token=…")

        self.step("The user clicks the link, presses the page's button and consents again")
        scanned = [self.browser.head(link).status_code, self.browser.get(link).status_code]
        self.say(f"a mail scanner's HEAD and GET of the link: {scanned} (a page; the link stays usable)")
        page = self.browser.get(link)
        if page.status_code != 200:
            raise StepFailed(f"the reconnect link answered HTTP {page.status_code}: {page.text[:200]}")
        form = one_form(page.text, str(page.url))
        self.say(f"the page names the integration and has one button ({form.method} {form.action.split('?')[0]})")
        page = self.follow(self.browser.request(form.method, form.action, data=form.fields))
        if page.status_code != 200:
            raise StepFailed(f"the reconnect ended with HTTP {page.status_code}: {page.text[:200]}")
        fixed = self.wait_for(
            "the reconnected state", lambda: (i := self.get_integration())["error_kind"] is None and i
        )
        self.say(f"status={fixed['status']} needs_reauth={fixed['needs_reauth']} (same integration {fixed['id']})")
        confirm: list[Path] = self.wait_for("the confirmation email", lambda: len(m := self.mails()) >= 2 and m)
        self.say(f"confirmation: {_read_mail(confirm[-1])['Subject']}")

        self.summary()

    def _expire_soon(self, seconds: int) -> str:
        with self.system.container.sessions.begin() as s:
            row = s.get(Integration, self.integration_id)
            assert row is not None and row.token_expires_at is not None
            row.token_expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
            return row.token_expires_at.isoformat(timespec="seconds")

    def summary(self) -> None:
        rows = self.api.get("/integrations", headers=self.auth).json()
        print("\nSummary")
        cols = ("id", "platform", "display_name", "status", "last_sync_status", "needs_reauth", "token_expires_at")
        widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
        print("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        for r in rows:
            print("  " + "  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
        var = Path(self.system.settings.var_dir)
        url, iid = self.system.api_url, self.integration_id
        print(f"\nLogs (JSON lines): {var / 'demo.log'}; emails: {var / 'mail'}/")
        print(f"\nThe Integrations page: {url}/")
        print(f"  sign in as {DEMO_EMAIL}; the sign-in link arrives in {var / 'mail'}/sign-in-*.eml")
        if not self.serve:
            print(
                "`make demo SERVE=1` keeps the system serving after the walkthrough: that page, and curl lines to try."
            )
            return
        week = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=7)).isoformat()
        print("Try next, while the system serves:")
        print(f"  curl -H 'Authorization: Bearer {self.key}' {url}/integrations")
        print(f"  curl -X POST -H 'Authorization: Bearer {self.key}' {url}/integrations/{iid}/sync")
        print(f"  curl -H 'Authorization: Bearer {self.key}' '{url}/integrations/{iid}/insights?start={week}'")


def demo_environment(environ: Mapping[str, str], demo_dir: Path, port: int) -> dict[str, str]:
    """The standalone system's environment for the demo: SQLite and mail under `demo_dir`, the fake Google."""
    env = {k: v for k, v in environ.items() if not k.startswith(("GOOGLE_", "GBP_", "DATABASE_URL", "BROKER_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{demo_dir}/integrations.db",
        BROKER_URL="memory://",
        VAR_DIR=str(demo_dir),
        API_PORT=str(port),
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        LOG_FORMAT="json",
    )
    env.pop("SMTP_URL", None)
    return env


def _read_mail(path: Path) -> EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _reconnect_link(mail: EmailMessage) -> str:
    return _link(mail, r"https?://\S+/reconnect\?token=\S+", "reconnect")


def _link(mail: EmailMessage, pattern: str, what: str) -> str:
    part = mail.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    match = re.search(pattern, text)
    if not match:
        raise StepFailed(f"the email has no {what} link")
    return match.group(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    serve = os.environ.get("SERVE", "") not in ("", "0")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    port = int(os.environ.get("API_PORT") or 0) or _free_port()
    env = demo_environment(os.environ, DEMO_DIR, port)
    log_file = (DEMO_DIR / "demo.log").open("a")
    configure_logging("INFO", "json", stream=log_file)
    started = time.monotonic()
    print("integrations demo: the whole system in one process (SQLite, in-process broker, fake Google)")
    system = start_system(env, configure_logs=False)
    fake_url = system.fake_google.url if system.fake_google else "-"
    print(f"API at {system.api_url}; Google is the built-in FAKE at {fake_url}")
    demo = Demo(system, serve=serve)
    try:
        demo.run()
        print(f"\nDemo finished in {time.monotonic() - started:.1f}s.")
        if serve:
            print(f"Serving at {system.api_url} until Ctrl-C.", flush=True)
            _wait_for_interrupt()
    except (StepFailed, httpx.HTTPError, AssertionError, KeyError) as exc:
        print(f"\nFAILED at step {demo.step_no}: {exc}", file=sys.stderr)
        return 1
    finally:
        system.stop()
        log_file.close()
    return 0


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
