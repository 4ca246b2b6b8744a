"""Operator endpoints, behind ADMIN_API_KEY."""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.api import queries
from services.api.auth import require_admin
from services.api.state import api_state


async def token_health(request: Request) -> Response:
    """Active integrations in error or not synced for two intervals, with their owner's email."""
    require_admin(request)
    c = api_state(request).container
    rows = await anyio.to_thread.run_sync(queries.token_health, c.sessions, c.settings.sync_interval_hours)
    return JSONResponse(rows)


routes: list[BaseRoute] = [Route("/admin/token-health", token_health, methods=["GET"])]
