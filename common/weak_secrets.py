"""Weak secrets, refused outside standalone mode: known placeholders, and admin keys under 32 characters."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from common.errors import ConfigError

if TYPE_CHECKING:
    from common.config import Settings

MIN_ADMIN_KEY_LENGTH = 32
HOW_TO_GENERATE = "generate one with `openssl rand -hex 24`"
# Values people copy from examples and tutorials. Not `guest`: RabbitMQ accepts its default user only
# from localhost, which is how the tests and a developer's machine use it.
PLACEHOLDERS = frozenset(
    {
        "admin",
        "changeit",
        "changeme",
        "default",
        "example",
        "letmein",
        "pass",
        "passw0rd",
        "password",
        "postgres",
        "qwerty",
        "root",
        "secret",
        "test",
        "todo",
        "xxx",
        "123456",
        "12345678",
    }
)
_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "replace_me", "your-secret", "your_secret")


def is_placeholder(value: str) -> bool:
    """Whether `value` is a known placeholder or contains a "change me" marker (case-insensitive)."""
    v = value.strip().lower()
    return v in PLACEHOLDERS or any(marker in v for marker in _MARKERS)


def is_doc_placeholder(value: str) -> bool:
    """A value copied from documentation rather than set: `...`, `<your id>`, `your-client-id`, or a known one."""
    v = value.strip().lower()
    if not v:
        return False
    return is_placeholder(v) or "..." in v or "\u2026" in v or (v[0] == "<" and v[-1] == ">") or v.startswith("your-")


def check_oauth_client(s: Settings) -> None:
    """ConfigError for a GOOGLE_CLIENT_ID or GOOGLE_CLIENT_SECRET copied from documentation, naming the fix."""
    client = {"GOOGLE_CLIENT_ID": s.google_client_id, "GOOGLE_CLIENT_SECRET": s.google_client_secret.reveal()}
    for name, value in client.items():
        if is_doc_placeholder(value):
            raise ConfigError(
                f"{name} is a placeholder: set your OAuth client's (Google Cloud console, a Web application client), "
                "or use the fake Google: `make fake-google` prints the variables to export; "
                "`make run` uses its built-in fake when GOOGLE_* are unset"
            )


def check_secrets(s: Settings) -> None:
    """ConfigError naming the variable (never its value) for a placeholder secret or a short admin key."""
    admin = s.admin_api_key.reveal()
    if admin and is_placeholder(admin):
        raise ConfigError(f"ADMIN_API_KEY is a placeholder: {HOW_TO_GENERATE}")
    if admin and len(admin) < MIN_ADMIN_KEY_LENGTH:
        raise ConfigError(
            f"ADMIN_API_KEY must be at least {MIN_ADMIN_KEY_LENGTH} characters (it has {len(admin)}): {HOW_TO_GENERATE}"
        )
    urls = {"DATABASE_URL": s.database_url, "BROKER_URL": s.broker_url, "SMTP_URL": s.smtp_url.reveal()}
    for name, url in urls.items():
        password = unquote(urlsplit(url).password or "")
        if password and is_placeholder(password):
            raise ConfigError(f"{name} holds a placeholder password: set a real one ({HOW_TO_GENERATE})")
