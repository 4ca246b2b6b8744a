"""The reference: a bare Starlette endpoint answering like POST /integrations/{id}/sync, served like the API.

`python -m bench.bare_app --port P`: uvicorn with the API's settings (one process, same HTTP implementation,
no access log, no server header), no database, no broker, no middleware.
"""

from __future__ import annotations

import argparse
import sys
import uuid

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.api.http_protocol import HttpToolsOrH11


async def sync(request: Request) -> Response:
    iid = int(request.path_params["id"])
    return JSONResponse({"integration_id": iid, "message_id": str(uuid.uuid4())}, status_code=202)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/integrations/{id}/sync", sync, methods=["POST"]),
        Route("/integrations/{id}/refresh", sync, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
        http=HttpToolsOrH11,  # the API's server stack (services/api/__main__.py): uvloop + httptools
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
