"""Waiting for a server a service needs (RabbitMQ, PostgreSQL): give up on a refusal, retry an outage quietly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from common.logging import get_logger

log = get_logger("integrations.startup")


@dataclass(frozen=True)
class Unreachable:
    """Why a server could not be used: `fatal` when retrying cannot fix it (a refusal, not an outage)."""

    fatal: bool
    cause: str  # the server's own words, or the socket's; never a credential
    at: str = ""
    advice: str = ""
    server: str = "RabbitMQ"

    @property
    def reason(self) -> str:
        advice = f"; {self.advice}" if self.advice else ""
        return f"{self.server} at {self.at}: {self.cause}{advice}"


def wait_until_reachable(
    what: str,
    connect: Callable[[], None],
    describe: Callable[[BaseException], Unreachable],
    service: str,
    stop: threading.Event,
    *,
    max_delay: float = 30.0,
) -> Unreachable | None:
    """Call `connect` until it succeeds (None), fails in a way retrying cannot fix (returned), or `stop` is set.

    An outage costs one warning line per attempt (`<what>.unavailable`), the delay doubling up to `max_delay`.
    """
    delay, attempt = 1.0, 0
    while not stop.is_set():
        attempt += 1
        try:
            connect()
        except Exception as exc:
            problem = describe(exc)
            if problem.fatal:
                return problem
            log.warning(
                f"{what}.unavailable", service=service, attempt=attempt, retry_in_s=delay, reason=problem.reason
            )
            stop.wait(delay)
            delay = min(delay * 2, max_delay)
            continue
        if attempt > 1:
            log.info(f"{what}.available", service=service, attempt=attempt)
        return None
    return None
