"""`python -m services.api`: the API on uvicorn, at API_HOST:API_PORT, logging JSON through structlog."""

from __future__ import annotations

import atexit
import logging
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.config import Settings, load_settings
from common.errors import ConfigError
from common.logging import configure_logging, get_logger
from services.api.app import create_app
from services.api.http_protocol import HttpToolsOrH11
from services.api.publishing import api_broker_url


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if settings.api_workers > 1:
        return _serve_workers(settings)
    broker = make_broker(api_broker_url(settings.broker_url))
    container = bootstrap(settings, broker=broker)
    log = get_logger("integrations.api")
    log.info("api.starting", host=settings.api_host, port=settings.api_port, public_base_url=settings.public_base_url)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with these handlers that ends here, so
    # the broker and the database are closed and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    try:
        uvicorn.run(create_app(container), host=settings.api_host, port=settings.api_port, **_UVICORN)
    finally:
        broker.close()
        container.close()
        log.info("api.stopped")
    return 0


_UVICORN: dict[str, Any] = {
    "log_config": None,  # keep the structlog handlers bootstrap installed; uvicorn's loggers propagate to them
    "access_log": False,  # the app writes its own request line, without query strings (OAuth codes)
    "server_header": False,
    "proxy_headers": True,
    "timeout_graceful_shutdown": 10,
    # httptools, handing a connection to h11 for a method httptools does not know (it would answer 400 itself,
    # so the request would be neither logged nor counted as OTHER). The loop is uvloop when installed (pinned).
    "http": HttpToolsOrH11,
}


def _serve_workers(settings: Settings) -> int:
    """API_WORKERS uvicorn worker processes on one socket; each builds its own app (`worker_app`)."""
    configure_logging(settings.log_level, settings.log_format)
    get_logger("integrations.api").info(
        "api.starting", host=settings.api_host, port=settings.api_port, workers=settings.api_workers
    )
    uvicorn.run(
        "services.api.__main__:worker_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        **_UVICORN,
    )
    return 0


def worker_app() -> Starlette:
    """The app of one API worker process: its own container, database pools and AMQP connection."""
    settings = load_settings()
    broker = make_broker(api_broker_url(settings.broker_url))
    container = bootstrap(settings, broker=broker)
    # bootstrap's logging setup runs after uvicorn's here and would revive uvicorn's access log (request
    # lines with query strings, OAuth codes included): silence it again, as access_log=False does.
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False

    def closed() -> None:
        broker.close()
        container.close()

    atexit.register(closed)
    return create_app(container)


def _stopped(signum: int, frame: FrameType | None) -> None:
    """The signal uvicorn already acted on (graceful shutdown)."""


if __name__ == "__main__":
    sys.exit(main())
