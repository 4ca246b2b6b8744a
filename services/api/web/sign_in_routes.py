"""Signing in by emailed link (GET shows a form, only the POST signs in) and signing out."""

from __future__ import annotations

import re

import anyio.to_thread
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from common.logging import get_logger
from common.models import utcnow
from common.sign_in import LINK_PATH, SignInLinkError, check_link, make_signer, request_link, safe_next
from common.tasks import NOTIFY_SIGN_IN
from services.api.publishing import PublishFailed
from services.api.state import api_state
from services.api.web.session import csrf_ok, from_this_site, sign_in_response, sign_out, signed_in
from services.api.web.templating import render

log = get_logger("integrations.api.web.sign_in")

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
MAX_TOKEN_LENGTH = 2048


async def ask_for_link(request: Request) -> Response:
    """The same page whether or not the email is known; a known one gets a link by email."""
    form = await request.form()
    email, next_path = str(form.get("email", "")).strip(), safe_next(str(form.get("next", "")) or None)
    if not _EMAIL.fullmatch(email):
        return render(request, "sign_in.html", 400, waiting=None, next_path=next_path, error="Enter an email address.")
    state = api_state(request)
    sessions = state.container.sessions

    def record() -> int | None:
        with sessions.begin() as s:
            return request_link(s, email, next_path=next_path, now=utcnow())

    row_id = await anyio.to_thread.run_sync(record)

    async def publish() -> None:
        try:
            await state.gateway.send(NOTIFY_SIGN_IN, row_id)
        except PublishFailed:
            log.warning("sign_in.publish_failed", sign_in_id=row_id)

    # Sent after the answer, so a known address does not answer measurably slower than an unknown one.
    task = BackgroundTask(publish) if row_id is not None else None
    response = render(request, "sign_in_sent.html", email=email)
    response.background = task
    return response


async def link_page(request: Request) -> Response:
    """The emailed link: a page with one form. A GET (a mail scanner's preview) never signs in."""
    token = request.query_params.get("token", "")
    c = api_state(request).container
    signer = make_signer(c.settings.token_encryption_keys.reveal())
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return _refused(request, "This sign-in link is incomplete. Open the link from the email again.")

    def check() -> None:
        with c.sessions() as s:
            check_link(s, signer, token, utcnow(), use=False)

    try:
        await anyio.to_thread.run_sync(check)
    except SignInLinkError as exc:
        return _refused(request, exc.message)
    return render(request, "sign_in_link.html", token=token)


async def use_link(request: Request) -> Response:
    """Use the link once: a new session (the browser's old one revoked), then 303 on to `/`."""
    if not from_this_site(request):
        return render(request, "message.html", 403, heading="Please try again", text=_CSRF_TEXT)
    form = await request.form()
    token = str(form.get("token", ""))
    c = api_state(request).container
    signer = make_signer(c.settings.token_encryption_keys.reveal())
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return _refused(request, "This sign-in link is incomplete. Open the link from the email again.")

    def use() -> tuple[int, str]:
        with c.sessions.begin() as s:
            done = check_link(s, signer, token, utcnow(), use=True)
            return done.user_id, done.next_path

    try:
        user_id, next_path = await anyio.to_thread.run_sync(use)
    except SignInLinkError as exc:
        log.info("sign_in.link_rejected", reason=exc.message)
        return _refused(request, exc.message)
    log.info("sign_in.succeeded", user_id=user_id)
    base = c.settings.public_base_url.rstrip("/")
    return await sign_in_response(request, RedirectResponse(base + next_path, status_code=303), user_id)


async def sign_out_route(request: Request) -> Response:
    session = await signed_in(request)
    form = await request.form()
    if session is None:
        return RedirectResponse("/", status_code=303)
    if not from_this_site(request) or not csrf_ok(session, form.get("csrf")):
        return render(request, "message.html", 403, heading="Please try again", text=_CSRF_TEXT)
    return await sign_out(request, RedirectResponse("/", status_code=303), session)


def _refused(request: Request, message: str) -> Response:
    return render(
        request, "message.html", 400, heading="This sign-in link cannot be used", text=message, back_label="Sign in"
    )


_CSRF_TEXT = "This form was out of date or did not come from this site. Reload the page and try again."

routes: list[BaseRoute] = [
    Route("/sign-in", ask_for_link, methods=["POST"]),
    Route(LINK_PATH, link_page, methods=["GET"]),
    Route(LINK_PATH, use_link, methods=["POST"]),
    Route("/sign-out", sign_out_route, methods=["POST"]),
]
