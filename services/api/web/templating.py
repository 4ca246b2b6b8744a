"""Templates (Jinja2 through Starlette, autoescaped) and the headers every page carries, CSP first."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from common.config import Settings
from services.api.pages import content_security_policy

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name: nothing a user or Google wrote becomes markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)


def when(value: dt.datetime | None) -> str:
    """A moment as people read it on the page (UTC, to the minute)."""
    return "never" if value is None else value.astimezone(dt.UTC).strftime("%d %b %Y, %H:%M UTC")


_env.filters["when"] = when


def page_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy([settings.google_auth_url]),
        "Cache-Control": "no-store",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


_DEFAULTS: dict[str, Any] = {"session": None, "csrf": "", "who": "", "notice": "", "error": "", "waiting": None}


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings: Settings = request.app.state.api.container.settings
    response = templates.TemplateResponse(
        request, name, {**_DEFAULTS, **context}, status_code=status, headers=page_headers(settings)
    )
    assert isinstance(response, HTMLResponse)
    return response
