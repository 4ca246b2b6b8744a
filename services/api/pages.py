"""The few HTML pages a browser sees: the end of the OAuth flow, success or failure."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from services.api.errors import error_body

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body><main><h1>{title}</h1>{content}<p><a href="/">Your integrations</a></p></main></body>
</html>
"""
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """The policy of every HTML page: scripts, styles, images and fetches from our own origin only (no inline
    script or style anywhere); forms post to us or to `form_targets` (the origins a form's answer may redirect
    to, such as Google's consent screen)."""
    origins = sorted({f"{p.scheme}://{p.netloc}" for p in map(urlsplit, form_targets) if p.scheme and p.netloc})
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "connect-src 'self'",
            " ".join(("form-action 'self'", *origins)),
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )


def wants_json(request: Request) -> bool:
    """JSON only when the client asks for it and not for HTML (a browser gets the page)."""
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), content=f"<p>{escape(body)}</p>"), status, headers=_HEADERS)


def form_page(title: str, body: str, *, action: str, fields: dict[str, str], button: str) -> HTMLResponse:
    """A page with one POST form: hidden `fields` and one button (no script, so it works under a strict CSP)."""
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
    content = (
        f'<p>{escape(body)}</p><form method="post" action="{escape(action)}">{hidden}'
        f'<button type="submit">{escape(button)}</button></form>'
    )
    return HTMLResponse(_PAGE.format(title=escape(title), content=content), 200, headers=_HEADERS)


def failure(request: Request, status: int, code: str, message: str) -> Response:
    """An error answer the browser can read, or the API's JSON error body."""
    if wants_json(request):
        return JSONResponse(error_body(code, message), status, headers=_HEADERS)
    return page("The connection did not complete", message, status)
