"""The few HTML pages a browser sees: the end of the OAuth flow, success or failure."""

from __future__ import annotations

from html import escape

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
<body><main><h1>{title}</h1><p>{body}</p><p><a href="/">Your integrations</a></p></main></body>
</html>
"""
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def wants_json(request: Request) -> bool:
    """JSON only when the client asks for it and not for HTML (a browser gets the page)."""
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/html" not in accept


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=escape(body)), status, headers=_HEADERS)


def failure(request: Request, status: int, code: str, message: str) -> Response:
    """An error answer the browser can read, or the API's JSON error body."""
    if wants_json(request):
        return JSONResponse(error_body(code, message), status, headers=_HEADERS)
    return page("The connection did not complete", message, status)
