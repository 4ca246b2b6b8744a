"""Settings: one typed object read from the environment once."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.errors import ConfigError

GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_REVOKE_URL = "https://oauth2.googleapis.com/revoke"
GBP_ACCOUNT_MANAGEMENT_URL = "https://mybusinessaccountmanagement.googleapis.com/v1"
GBP_BUSINESS_INFORMATION_URL = "https://mybusinessbusinessinformation.googleapis.com/v1"
GBP_PERFORMANCE_URL = "https://businessprofileperformance.googleapis.com/v1"
MEMORY_BROKER = "memory://"


class Secret:
    """A secret value whose repr and str show nothing; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Every setting of every service; see the configuration table in ARCHITECTURE.md."""

    database_url: str = "sqlite:///var/integrations.db"
    broker_url: str = MEMORY_BROKER
    token_encryption_keys: Secret = field(default_factory=lambda: Secret(""))
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    google_client_id: str = ""
    google_client_secret: Secret = field(default_factory=lambda: Secret(""))
    google_auth_url: str = GOOGLE_AUTH_URL
    google_token_url: str = GOOGLE_TOKEN_URL
    google_revoke_url: str = GOOGLE_REVOKE_URL
    gbp_account_management_url: str = GBP_ACCOUNT_MANAGEMENT_URL
    gbp_business_information_url: str = GBP_BUSINESS_INFORMATION_URL
    gbp_performance_url: str = GBP_PERFORMANCE_URL
    smtp_url: Secret = field(default_factory=lambda: Secret(""))
    mail_from: str = "integrations@localhost"
    ops_email: str = ""
    admin_api_key: Secret = field(default_factory=lambda: Secret(""))
    refresh_margin_seconds: int = 300
    nightly_refresh_cron: str = "0 2 * * *"
    nightly_refresh_within_seconds: int = 86400
    scheduler_timezone: str = "UTC"
    refresh_spread_seconds: int = 0
    sync_interval_hours: float = 24.0
    gbp_qpm: int = 300
    google_token_qpm: int = 0
    http_timeout_seconds: float = 10.0
    lock_timeout_seconds: float = 30.0
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from another host or container
    rabbitmq_management_url: Secret = field(default_factory=lambda: Secret(""))
    log_level: str = "INFO"
    log_format: str = ""
    var_dir: str = "var"
    api_rate_limit_per_minute: int = 60
    api_rate_limit_burst: int = 10
    # Uvicorn worker processes of `python -m services.api`, each with its own pool and AMQP connection.
    api_workers: int = 1
    # Work requests (POST sync/refresh) in flight per API process; past it: 503 + Retry-After at once.
    api_max_in_flight: int = 200

    def __repr__(self) -> str:
        # DATABASE_URL and BROKER_URL carry passwords: shown masked, as the Secret fields are.
        shown = (f"{f.name}={_masked(f.name, getattr(self, f.name))!r}" for f in fields(self))
        return f"Settings({', '.join(shown)})"

    @property
    def standalone(self) -> bool:
        """One process on the in-process broker: the only mode where secrets may default."""
        return self.broker_url == MEMORY_BROKER

    @property
    def redirect_uri(self) -> str:
        return self.public_base_url.rstrip("/") + "/oauth/google/callback"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


_URL_FIELDS = frozenset({"database_url", "broker_url"})


def _masked(name: str, value: object) -> object:
    if name not in _URL_FIELDS or not isinstance(value, str):
        return value
    try:
        parts = urlsplit(value)
        if parts.password is None:
            return value
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:**********@{host}"))
    except ValueError:
        return "**********"


_INT_FIELDS = {f.name for f in fields(Settings) if f.type in ("int", int)}
_FLOAT_FIELDS = {f.name for f in fields(Settings) if f.type in ("float", float)}
_SECRET_FIELDS = {f.name for f in fields(Settings) if f.type in ("Secret", Secret)}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment, failing with a message that names the bad variable."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = env.get(f.name.upper())
        if raw is None or raw == "":
            continue
        if f.name in _INT_FIELDS:
            values[f.name] = _cast(f.name, raw, int)
        elif f.name in _FLOAT_FIELDS:
            values[f.name] = _cast(f.name, raw, float)
        elif f.name in _SECRET_FIELDS:
            values[f.name] = Secret(raw)
        else:
            values[f.name] = raw
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    if settings.standalone and not settings.token_encryption_keys:
        settings = _with(settings, token_encryption_keys=Secret(_standalone_keys(Path(settings.var_dir))))
    return settings


def _cast(name: str, raw: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name.upper()} must be a number, got {raw!r}") from None


def check_database_url(url: str) -> None:
    """ConfigError unless `url` is one of the databases the project runs on."""
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError("DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL")


def _validate(s: Settings) -> None:
    check_database_url(s.database_url)
    if not s.broker_url.startswith(("amqp://", "amqps://", MEMORY_BROKER)):
        raise ConfigError("BROKER_URL must be amqp://user:pass@host:5672/vhost or memory://")
    if not s.standalone and not s.token_encryption_keys:
        raise ConfigError("TOKEN_ENCRYPTION_KEYS is required outside standalone mode (integrations keys generate)")
    if not s.standalone:
        from common.weak_secrets import check_secrets

        check_secrets(s)
    if s.token_encryption_keys:
        from common.cipher import parse_keys  # the cipher owns the key format

        parse_keys(s.token_encryption_keys.reveal())
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")
    if s.log_format not in ("", "json", "console"):
        raise ConfigError(f"LOG_FORMAT must be json or console, got {s.log_format!r}")
    try:
        ZoneInfo(s.scheduler_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"SCHEDULER_TIMEZONE is not a known time zone: {s.scheduler_timezone!r}") from None
    if s.refresh_margin_seconds < 0 or s.nightly_refresh_within_seconds < 0:
        raise ConfigError("REFRESH_MARGIN_SECONDS and NIGHTLY_REFRESH_WITHIN_SECONDS must not be negative")
    if s.sync_interval_hours <= 0 or s.gbp_qpm <= 0 or s.google_token_qpm < 0:
        raise ConfigError("SYNC_INTERVAL_HOURS and GBP_QPM must be positive, GOOGLE_TOKEN_QPM not negative")
    if not 0 <= s.api_port <= 65535:
        raise ConfigError(f"API_PORT must be a TCP port (0-65535), got {s.api_port}")
    if not 0 <= s.metrics_port <= 65535:
        raise ConfigError(f"METRICS_PORT must be a TCP port (1-65535), got {s.metrics_port}")
    if s.api_rate_limit_per_minute < 0 or s.api_rate_limit_burst < 1:
        raise ConfigError("API_RATE_LIMIT_PER_MINUTE must not be negative and API_RATE_LIMIT_BURST must be at least 1")
    if s.api_workers < 1 or s.api_max_in_flight < 1:
        raise ConfigError("API_WORKERS and API_MAX_IN_FLIGHT must be at least 1")
    if not s.public_base_url.startswith(("http://", "https://")):
        raise ConfigError("PUBLIC_BASE_URL must be an http(s) URL")
    from common.weak_secrets import check_oauth_client

    check_oauth_client(s)  # in standalone mode too: exported placeholders would replace the built-in fake


def _with(s: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(s, **changes)  # type: ignore[arg-type]


def _standalone_keys(var_dir: Path) -> str:
    """The standalone key ring, generated once into var/ so tokens survive restarts."""
    from common.cipher import generate_key_spec, parse_keys

    path = var_dir / "token-keys"
    if not path.exists():
        var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Written whole to a private file, then linked into place: a process starting at the same
        # moment sees either no file or the complete ring, and the first link wins.
        tmp = var_dir / f".token-keys.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(generate_key_spec() + "\n")
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink()
    spec = path.read_text().strip()
    try:
        parse_keys(spec)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return spec
