"""structlog setup: JSON lines (console on a TTY), stdlib loggers through the same chain, redaction last.

structlog's events are rendered by structlog and written by `LineLogger`; stdlib records (Dramatiq, pika,
uvicorn) go through the root handler's `ProcessorFormatter` with the same processors: one format either way.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"(^|_)(access_token|refresh_token|id_token|token|tokens|secret|client_secret|password|passwd|"
    r"authorization|code_verifier|verifier|code|api_key|cookie|key|keys|smtp_url)$",
    re.IGNORECASE,
)
# Linear by construction: every run is possessive (`++`, `*+`), so the engine never gives back what a run
# matched, and a run that may hold a JWT only starts where no token character precedes it, so no run is
# rescanned from a later start. A backtracking `eyJ[\w-]+\.` took quadratic time on "eyJeyJeyJ...".
_SECRET_VALUE = re.compile(
    r"(ya29\.[\w\-.~+/]++"
    r"|1//[\w\-.~+/]++"
    r"|(?i:bearer)\s++[\w\-.~+/]++=*+"
    r"|(?<![\w-])eyJ[\w-]++\.eyJ[\w-]++\.[\w-]*+"
    r"|(?<=[?&;\s])(?:access_token|refresh_token|code|token|client_secret|code_verifier)=[^&\s\"']++"
    r"|(?<=://)[^/@\s:]++:[^/@\s]++(?=@))"
)
# Longer strings keep their head and tail around a marker: log lines stay small whatever a client sends.
# A traceback keeps more, as its last frames say what went wrong.
MAX_LOGGED_CHARS = 8 * 1024
_MAX_CHARS_BY_KEY = {"exception": 64 * 1024, "stack": 64 * 1024}
# What a token can be made of: a cut drops the partial run on each side rather than log half a secret.
_TOKEN_CHARS = "".join(chr(c) for c in range(33, 127) if chr(c) not in "\"'<>()[]{},;&|")


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 4].rstrip(_TOKEN_CHARS), text[-(limit - limit // 4) :].lstrip(_TOKEN_CHARS)
    return f"{head}[{len(text) - len(head) - len(tail)} chars dropped]{tail}"


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the log line
        return f"<unprintable {type(value).__name__}>"


def _scrub(value: Any, depth: int = 0, limit: int = MAX_LOGGED_CHARS) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth <= 4 and isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_key(k) else _scrub(v, depth + 1) for k, v in value.items()}
    if depth <= 4 and isinstance(value, list | tuple):
        return type(value)(_scrub(v, depth + 1) for v in value)
    # Anything else (an exception, a URL object, a nesting too deep) is scrubbed as the text it renders to.
    text = _cap(value if isinstance(value, str) else _text(value), limit)
    return _SECRET_VALUE.sub(REDACTED, text) if text else text


# Names the pattern above would catch that hold no secret (a scheduler run's job and minute).
_NOT_SECRET = frozenset({"run_key"})


@functools.lru_cache(maxsize=4096)  # a log line's keys come from a small set: the pattern runs once per name
def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key not in _NOT_SECRET and bool(_SECRET_KEY.search(key))


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Last line of defence: secret-named keys are blanked and token-shaped values masked."""
    for key in list(event_dict):
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key], limit=_MAX_CHARS_BY_KEY.get(key, MAX_LOGGED_CHARS))
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]


class LineLogger:
    """Where structlog's own events go: one rendered line per call, written and flushed under the stdlib
    handler's lock, so they never interleave with the stdlib records (Dramatiq's, pika's) in the same stream.

    Our events skip the stdlib machinery (LogRecord, handler, ProcessorFormatter): the same processors,
    redaction and renderer, at about half the CPU of a line.
    """

    def __init__(self, name: str, stream: Any, lock: Any) -> None:
        self.name, self._stream, self._lock = name, stream, lock

    def msg(self, line: str) -> None:
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def configure_logging(level: str = "INFO", fmt: str = "", *, stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger; call once from a service's bootstrap."""
    out = stream or sys.stdout
    if not fmt:
        fmt = "console" if getattr(out, "isatty", lambda: False)() else "json"
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer(default=str)
    )
    shared = _shared_processors()
    handler = logging.StreamHandler(out)
    lock = handler.lock or threading.RLock()

    def line_logger(*args: Any) -> LineLogger:
        return LineLogger(str(args[0]) if args else "root", out, lock)

    structlog.configure(
        processors=[*shared, redact, renderer],
        logger_factory=line_logger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # Not cached: a logger already used must follow a later configure_logging (level, stream, capture).
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact,
            renderer,
        ],
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("pika", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("dramatiq", "uvicorn", "uvicorn.error", "uvicorn.access", "periodiq"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
