"""Reach RabbitMQ before a service consumes: say why it refuses us, stop where retrying cannot help.

RabbitMQ names its reason when it closes a connection at the handshake (`530 NOT_ALLOWED - vhost x not
found`, `403 ACCESS_REFUSED - Login was refused ...`); pika wraps it in a long exception. A refusal is a
configuration problem that no retry fixes, so the service exits with one line naming it. Anything else
(connection refused, a timeout, an unknown host) may be an outage: one line per attempt, with backoff.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions

from common.reachability import Unreachable, wait_until_reachable

_REPLY = re.compile(r"\((\d{3})\) ['\"]([^'\"]{0,300})['\"]")
_SOCKET_TIMEOUT_S = 5.0


def where(url: str) -> str:
    """`host:port (vhost 'v')` of an AMQP URL, never its credentials."""
    parts = urlsplit(url.split(";")[0])
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return f"{parts.hostname}:{parts.port or 5672} (vhost {vhost!r})"


def describe(exc: BaseException, url: str | None = None) -> Unreachable:
    """The problem behind a pika (or socket) error, in an operator's words (`at` names the URL's host, if given)."""
    reply = _broker_reply(exc)
    at = where(url) if url else "?"
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError) or (reply and reply.startswith("403")):
        cause = f"login refused ({reply or 'ACCESS_REFUSED'})"
        return Unreachable(True, cause, at, "check the user and password in BROKER_URL")
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError) or (reply and reply.startswith("530")):
        cause = f"vhost refused ({reply or 'NOT_ALLOWED'})"
        advice = "create it (rabbitmqctl add_vhost NAME, then set_permissions) or fix the path of BROKER_URL"
        return Unreachable(True, cause, at, advice)
    root = _root_cause(exc)
    text = str(root).lower()
    if isinstance(root, ConnectionRefusedError) or "connection refused" in text:
        return Unreachable(False, "connection refused", at, "is RabbitMQ running on that port?")
    if isinstance(root, TimeoutError) or "timed out" in text:
        return Unreachable(False, "no answer in time", at)
    if "name or service not known" in text or "nodename nor servname" in text:
        return Unreachable(False, "host name cannot be resolved", at, "check the host of BROKER_URL")
    return Unreachable(False, f"unavailable ({type(root).__name__})", at)


def check(url: str) -> None:
    """Open and close one connection; raises what pika raised."""
    params = pika.URLParameters(url.split(";")[0])
    params.connection_attempts, params.retry_delay, params.socket_timeout = 1, 0, _SOCKET_TIMEOUT_S
    pika_log = logging.getLogger("pika")
    level = pika_log.level
    pika_log.setLevel(logging.CRITICAL)  # pika logs each failed handshake with a traceback; we say it once
    try:
        pika.BlockingConnection(params).close()
    finally:
        pika_log.setLevel(level)


def wait_for_broker(url: str, service: str, stop: threading.Event) -> Unreachable | None:
    """Block until RabbitMQ takes a connection (None), a refusal (its problem), or `stop` is set."""
    return wait_until_reachable("broker", lambda: check(url), lambda exc: describe(exc, url), service, stop)


def _broker_reply(exc: BaseException) -> str | None:
    """`530 NOT_ALLOWED - vhost x not found` from pika's nested exception text, if RabbitMQ said anything."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        match = _REPLY.search(str(current)) or _REPLY.search(repr(current.args))
        if match:
            return f"{match.group(1)} {match.group(2).rstrip('. ')}"
        current = current.__cause__ or current.__context__
    return None


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost socket error pika wrapped (it keeps them in `args`, not in `__cause__`)."""
    current = exc
    for _ in range(5):
        inner = next((a for a in current.args if isinstance(a, BaseException)), None)
        inner = inner or getattr(current, "exception", None)
        if not isinstance(inner, BaseException):
            break
        current = inner
    return current
