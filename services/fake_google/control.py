"""HTTP control surface under /_control/, mirroring FakeGoogle's Python methods for subprocess users."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from services.fake_google.state import FakeGoogle

_SETTINGS = {
    "default_user": str,
    "token_lifetime": int,
    "rotate_refresh_tokens": bool,
    "accounts_per_user": int,
    "locations_per_account": int,
}


class _BadControl(Exception):
    pass


def _ok(body: Any = None) -> Response:
    return Response(json.dumps({"ok": True} if body is None else body), 200, media_type="application/json")


def _req(data: dict[str, Any], key: str) -> Any:
    if key not in data:
        raise _BadControl(f"missing field {key!r}")
    return data[key]


def _qpm(value: Any) -> int | None:
    return None if value is None else int(value)


def control_routes(fake: FakeGoogle) -> list[BaseRoute]:
    """The /_control/* routes acting on `fake`."""

    def revoke(data: dict[str, Any]) -> Any:
        if "email" in data:
            return {"revoked": fake.revoke_user(str(data["email"]))}
        return {"revoked": int(fake.revoke_refresh_token(str(_req(data, "refresh_token"))))}

    def fail(data: dict[str, Any]) -> None:
        endpoint, status = str(_req(data, "endpoint")), int(_req(data, "status"))
        retry_after, body = data.get("retry_after"), data.get("body")
        if "ratio" in data:
            fake.fail_ratio(endpoint, status, float(data["ratio"]), data.get("seed"), retry_after, body)
        else:
            fake.fail_next(endpoint, status, int(data.get("count", 1)), retry_after, body)

    def configure(data: dict[str, Any]) -> None:
        unknown = set(data) - set(_SETTINGS) - {"client_status", "grant_scopes"}
        if unknown:
            raise _BadControl(f"unknown settings {sorted(unknown)}")
        for key, kind in _SETTINGS.items():
            if key in data:
                setattr(fake, key, kind(data[key]))
        if "client_status" in data:
            fake.set_client_status(data["client_status"])
        if "grant_scopes" in data:
            fake.grant_scopes(data["grant_scopes"])

    actions: dict[str, Callable[[dict[str, Any]], Any]] = {
        "revoke": revoke,
        "fail": fail,
        "clear_failures": lambda d: fake.clear_failures(),
        "latency": lambda d: fake.set_latency(str(d.get("endpoint", "*")), float(_req(d, "ms"))),
        "hang": lambda d: fake.hang_next(str(_req(d, "endpoint")), float(_req(d, "seconds"))),
        "config": configure,
        "deny_next_consent": lambda d: fake.deny_next_consent(),
        "forbid_location": lambda d: fake.forbid_location(str(_req(d, "name"))),
        "grant_error": lambda d: fake.set_grant_error(str(_req(d, "key")), d.get("error")),
        "expire_access_tokens": lambda d: fake.expire_access_tokens(d.get("email")),
        "user_shape": lambda d: fake.set_user_shape(str(_req(d, "email")), d.get("accounts"), d.get("locations")),
        "grants": lambda d: {"grants": fake.create_grants(int(_req(d, "count")), str(d.get("prefix", "bulk")))},
        "quota": lambda d: fake.set_quota(_qpm(d.get("qpm")), _qpm(d.get("token_qpm"))),
        "reset": lambda d: fake.reset(),
    }

    def post(action: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            raw = await request.body()
            try:
                data = json.loads(raw) if raw.strip() else {}
                if not isinstance(data, dict):
                    raise _BadControl("body must be a JSON object")
                return _ok(action(data))
            except (_BadControl, ValueError, TypeError) as exc:
                return Response(json.dumps({"error": str(exc)}), 400, media_type="application/json")

        return handler

    async def stats(request: Request) -> Response:
        return _ok(fake.stats())

    routes: list[BaseRoute] = [Route("/_control/stats", stats, methods=["GET"])]
    routes += [Route(f"/_control/{name}", post(action), methods=["POST"]) for name, action in actions.items()]
    return routes
