from __future__ import annotations

import io
import json
import logging
import re
import re._parser as re_parser
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from common.logging import _SECRET_VALUE, MAX_LOGGED_CHARS, REDACTED, configure_logging, get_logger

ACCESS = "ya29.a0AfB_byC-secret-access-token_value"
REFRESH = "1//0gSecretRefreshToken-abc_def"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"
SECRETS = (ACCESS, REFRESH, JWT, "hunter2", "s3cr3t-client", "verifier-value-xyz", "4/0AuthCodeValue", "sk-api-key")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def out(restore_logging: None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def assert_clean(stream: io.StringIO) -> None:
    text = stream.getvalue()
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked"


def test_secret_keys_are_redacted(out: io.StringIO) -> None:
    get_logger("integrations.test").info(
        "token.refresh.succeeded",
        integration_id=42,
        access_token=ACCESS,
        refresh_token=REFRESH,
        id_token=JWT,
        client_secret="s3cr3t-client",
        password="hunter2",
        authorization="Basic aHVudGVyMg==",
        code_verifier="verifier-value-xyz",
        code="4/0AuthCodeValue",
        api_key="sk-api-key",
        expires_at="2030-01-01T00:00:00+00:00",
        reason=None,
    )
    [line] = lines(out)
    for key in (
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "authorization",
        "code_verifier",
        "code",
        "api_key",
    ):
        assert line[key] == REDACTED, key
    assert line["integration_id"] == 42 and line["expires_at"] == "2030-01-01T00:00:00+00:00"
    assert line["event"] == "token.refresh.succeeded" and line["level"] == "info"
    assert line["logger"] == "integrations.test" and line["timestamp"].endswith("Z")
    assert_clean(out)


def test_token_shaped_values_are_masked_wherever_they_appear(out: io.StringIO) -> None:
    log = get_logger("integrations.test")
    log.warning(
        f"sent {ACCESS} to google",
        message=f"Authorization: Bearer {ACCESS}",
        url="https://oauth2.example/token?grant_type=refresh_token&refresh_token=1%2F%2F0gSecret&code=4/0AuthCodeValue",
        dsn="amqp://guest:hunter2@rabbit:5672/%2F",
        nested={"headers": {"Authorization": "Bearer abc"}, "items": [REFRESH, {"id_token": JWT}]},
        jwt=JWT,
    )
    [line] = lines(out)
    assert line["event"] == f"sent {REDACTED} to google"
    assert line["message"] == f"Authorization: {REDACTED}"
    assert "grant_type=refresh_token" in line["url"] and "1%2F%2F0gSecret" not in line["url"]
    assert line["dsn"] == f"amqp://{REDACTED}@rabbit:5672/%2F"
    assert line["nested"]["headers"]["Authorization"] == REDACTED
    assert line["nested"]["items"][0] == REDACTED and line["nested"]["items"][1]["id_token"] == REDACTED
    assert_clean(out)


def test_exceptions_are_rendered_and_scrubbed(out: io.StringIO) -> None:
    try:
        raise RuntimeError(f"google said no to {REFRESH}")
    except RuntimeError:
        get_logger("integrations.test").exception("sync.failed", integration_id=1)
    [line] = lines(out)
    assert "RuntimeError: google said no to" in line["exception"]
    assert_clean(out)


@pytest.mark.parametrize("name", ["dramatiq.worker.WorkerThread", "pika.adapters.blocking_connection", "uvicorn.error"])
def test_stdlib_loggers_go_through_the_same_json_chain(out: io.StringIO, name: str) -> None:
    logging.getLogger(name).warning("lost connection while holding %s", ACCESS)
    [line] = lines(out)
    assert line["event"] == f"lost connection while holding {REDACTED}"
    assert line["logger"] == name and line["level"] == "warning" and line["timestamp"].endswith("Z")
    assert_clean(out)


def test_stdlib_exception_is_scrubbed(out: io.StringIO) -> None:
    try:
        raise ValueError(f"bad header Bearer {ACCESS}")
    except ValueError:
        logging.getLogger("dramatiq.worker").exception("actor failed")
    [line] = lines(out)
    assert line["event"] == "actor failed" and "ValueError" in line["exception"]
    assert_clean(out)


def test_noisy_client_libraries_stay_quiet_below_warning(out: io.StringIO) -> None:
    logging.getLogger("pika.connection").info("socket connected")
    logging.getLogger("httpx").info("HTTP Request: POST https://oauth2.googleapis.com/token")
    logging.getLogger("dramatiq.worker").info("worker started")
    assert [line["logger"] for line in lines(out)] == ["dramatiq.worker"]


def test_level_filters_structlog_and_stdlib(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "json", stream=stream)
    get_logger("integrations.test").info("quiet")
    logging.getLogger("dramatiq").info("quiet too")
    get_logger("integrations.test").warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_console_format_still_redacts(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "console", stream=stream)
    get_logger("integrations.test").info("refreshed", refresh_token=REFRESH, note=f"Bearer {ACCESS}")
    text = stream.getvalue()
    assert "refreshed" in text and REDACTED in text
    assert not text.lstrip().startswith("{")
    assert_clean(stream)


def test_a_module_logger_follows_reconfiguration(restore_logging: None) -> None:
    # Services build module-level loggers at import and may configure logging more than once (the
    # one-process `make run`, the CLI, tests): each configuration must apply to loggers already used.
    log = get_logger("integrations.test.module")
    first = io.StringIO()
    configure_logging("WARNING", "json", stream=first)
    log.warning("first")
    second = io.StringIO()
    configure_logging("DEBUG", "json", stream=second)
    log.debug("second", access_token=ACCESS)
    assert [line["event"] for line in lines(first)] == ["first"]
    assert [line["event"] for line in lines(second)] == ["second"]
    with capture_logs() as captured:
        log.info("captured")
    assert [c["event"] for c in captured] == ["captured"]
    assert_clean(second)


def test_the_scheduler_run_key_is_not_a_secret(out: io.StringIO) -> None:
    get_logger("integrations.scheduler").info(
        "scheduler.fired", run_key="refresh_all@2026-11-27T02:00Z", api_key="sk-api-key", signing_key="hunter2"
    )

    (line,) = lines(out)
    assert line["run_key"] == "refresh_all@2026-11-27T02:00Z"
    assert line["api_key"] == REDACTED and line["signing_key"] == REDACTED


HOSTILE = "eyJ" * 4990 + "000001"  # the review's HTTP method: a JWT-like prefix that never completes


def _repeats(pattern: re.Pattern[str]) -> list[str]:
    """Every quantifier of `pattern` that can give back what it matched (so can backtrack)."""
    found: list[str] = []

    def walk(items: Any) -> None:
        for op, arg in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT") and arg[1] > 1:
                found.append(f"{name}{arg[:2]}")
            for child in arg if isinstance(arg, list | tuple) else ():
                if isinstance(child, re_parser.SubPattern):
                    walk(child)
                elif isinstance(child, list | tuple):
                    for grand in child:
                        if isinstance(grand, re_parser.SubPattern):
                            walk(grand)

    walk(re_parser.parse(pattern.pattern, pattern.flags))
    return found


def test_redaction_patterns_cannot_backtrack() -> None:
    """Linear by construction: every run is possessive, so no input makes the engine retry a run it matched."""
    assert _repeats(_SECRET_VALUE) == []


def test_a_hostile_value_is_scrubbed_once_and_capped(out: io.StringIO) -> None:
    get_logger("integrations.test").info("http.request", method=HOSTILE, note="x" * 40_000)
    [line] = lines(out)
    assert len(line["method"]) <= MAX_LOGGED_CHARS + 64 and len(line["note"]) <= MAX_LOGGED_CHARS + 64
    assert "chars dropped" in line["note"]
    assert line["method"] == f"[{len(HOSTILE)} chars dropped]", "one run of token characters: nothing of it is kept"


def test_a_cut_never_leaves_half_a_token_on_either_side(out: io.StringIO) -> None:
    value = "start " + REFRESH + "x" * 20_000 + " end"
    get_logger("integrations.test").info("long", value=value, secret_run="a" * 5_000 + ACCESS[5:] + "b" * 9_000)
    [line] = lines(out)
    assert line["value"].startswith("start ") and line["value"].endswith(" end")
    assert "0gSecretRefreshToken" not in out.getvalue() and ACCESS[5:] not in out.getvalue()


class _Carrier:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __str__(self) -> str:
        return f"request to https://oauth2.example/token?refresh_token={self.secret} with Bearer {ACCESS}"

    __repr__ = __str__


def test_objects_are_rendered_to_text_before_scrubbing(out: io.StringIO) -> None:
    deep: Any = {"x": _Carrier("deep-secret-value")}
    for _ in range(8):
        deep = {"d": deep}
    get_logger("integrations.test").info(
        "sync.failed", error=ValueError(f"got {REFRESH}"), request=_Carrier("obj-secret-value"), deep=deep
    )
    text = out.getvalue()
    assert "obj-secret-value" not in text and "deep-secret-value" not in text
    assert_clean(out)
    [line] = lines(out)
    assert line["error"] == f"got {REDACTED}"


def test_stdlib_arguments_that_are_objects_are_scrubbed(out: io.StringIO) -> None:
    logging.getLogger("dramatiq.worker").warning("failed %s", _Carrier("stdlib-secret-value"))
    assert "stdlib-secret-value" not in out.getvalue()
    assert_clean(out)
