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
    """Active integrations whose last sync or refresh failed, with their owner's email."""
    require_admin(request)
    sessions = api_state(request).container.sessions
    return JSONResponse(await anyio.to_thread.run_sync(queries.token_health, sessions))


routes: list[BaseRoute] = [Route("/admin/token-health", token_health, methods=["GET"])]
