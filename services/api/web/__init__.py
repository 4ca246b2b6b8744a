"""The web pages: sign-in by emailed link, the Integrations page, insights, the operators' page."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from services.api.web import admin_page, connect_page, insights_page, integrations_page, sign_in_routes
from services.api.web.templating import STATIC_DIR


def web_routes() -> list[BaseRoute]:
    """Every page's route and `/static` (the stylesheet and the one script)."""
    return [
        *sign_in_routes.routes,
        *integrations_page.routes,
        *insights_page.routes,
        *connect_page.routes,
        *admin_page.routes,
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
