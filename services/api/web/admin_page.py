"""`GET /admin`: the operators' page, for the admin bearer key or an operator session (signed in with that key)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from common.bootstrap import Container
from common.logging import get_logger
from common.models import utcnow
from common.quota import QuotaGovernor
from services.api.auth import bearer_key
from services.api.state import api_state
from services.api.web import admin_queries
from services.api.web.session import from_this_site, session_cookie, set_session_cookie, signed_in, start_session
from services.api.web.templating import render

log = get_logger("integrations.api.web.admin")


@dataclass(frozen=True)
class QuotaRow:
    api: str
    budget_per_minute: int | None
    used_last_minute: int
    throttled_total: int
    pace_per_minute: float | None


def governor_quota(c: Container) -> list[QuotaRow] | None:
    """Each Google API's budget, calls in the last minute, 429s and current pace, from the quota governor
    (None where there is no governor, as in a container built without one)."""
    if not isinstance(c.quota, QuotaGovernor):
        return None
    return [
        QuotaRow(u.api, u.budget_qpm, u.used_last_minute, u.throttled_total, u.current_qpm) for u in c.quota.usage()
    ]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _key_ok(expected: str, given: str) -> bool:
    # Digests compared, so neither the key's length nor a prefix leaks through timing.
    return bool(expected) and bool(given) and hmac.compare_digest(_digest(expected), _digest(given))


async def admin_page(request: Request) -> Response:
    c = api_state(request).container
    expected = c.settings.admin_api_key.reveal()
    if not expected:
        return render(
            request, "message.html", 503, heading="The operators' page is off", text="ADMIN_API_KEY is not set."
        )
    session = await signed_in(request)
    operator = session is not None and session.operator
    if not operator and not _key_ok(expected, bearer_key(request) or ""):
        return render(request, "admin_sign_in.html", 401 if bearer_key(request) else 200)

    def load() -> dict[str, Any]:
        now = utcnow()
        with c.sessions() as s:
            counts, attention = admin_queries.overview(s, now)
            return {
                "counts": counts,
                "attention": attention,
                "incidents": admin_queries.open_incidents(s),
                "runs": admin_queries.last_runs(s),
                "quota": governor_quota(c),
            }

    figures = await anyio.to_thread.run_sync(load)
    csrf = session.csrf_token if operator and session is not None else ""
    return render(request, "admin.html", session=session if operator else None, csrf=csrf, who="operator", **figures)


async def admin_sign_in(request: Request) -> Response:
    """The admin key, typed once into a form, becomes an operator session (the key is never put in a cookie)."""
    c = api_state(request).container
    if not from_this_site(request):
        return render(request, "admin_sign_in.html", 403, error="This form must be sent from this site.")
    form = await request.form()
    if not _key_ok(c.settings.admin_api_key.reveal(), str(form.get("key", ""))):
        log.info("admin.sign_in_rejected")
        return render(request, "admin_sign_in.html", 401, error="That is not the admin key.")
    old = session_cookie(request)
    raw = await anyio.to_thread.run_sync(lambda: start_session(c, user_id=None, operator=True, replacing=old))
    response = RedirectResponse("/admin", status_code=303)
    set_session_cookie(response, raw, c.settings)
    log.info("admin.signed_in")
    return response


routes: list[BaseRoute] = [
    Route("/admin", admin_page, methods=["GET"]),
    Route("/admin/sign-in", admin_sign_in, methods=["POST"]),
]
