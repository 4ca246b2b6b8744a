"""`python -m services.api`: the API on uvicorn, at API_HOST:API_PORT, logging JSON through structlog."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn

from common.bootstrap import bootstrap
from common.broker import make_broker
from common.config import load_settings
from common.errors import ConfigError
from common.logging import get_logger
from services.api.app import create_app
from services.api.publishing import api_broker_url


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    broker = make_broker(api_broker_url(settings.broker_url))
    container = bootstrap(settings, broker=broker)
    log = get_logger("integrations.api")
    log.info("api.starting", host=settings.api_host, port=settings.api_port, public_base_url=settings.public_base_url)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with these handlers that ends here, so
    # the broker and the database are closed and the process exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    try:
        uvicorn.run(
            create_app(container),
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,  # keep the structlog handlers bootstrap installed; uvicorn's loggers propagate to them
            access_log=False,  # the app writes its own request line, without query strings (OAuth codes)
            server_header=False,
            proxy_headers=True,
            timeout_graceful_shutdown=10,
        )
    finally:
        broker.close()
        container.close()
        log.info("api.stopped")
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    """The signal uvicorn already acted on (graceful shutdown)."""


if __name__ == "__main__":
    sys.exit(main())
