"""Wires settings, database, cipher, Google clients, token service and broker for one process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import dramatiq
import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.cipher import TokenCipher
from common.config import Settings, load_settings
from common.db import make_engine, make_sessionmaker
from common.events import Event, IncidentClosed, IncidentOpened, Publisher, discard
from common.gbp_client import GbpClient, GbpUrls
from common.google_oauth import GoogleOAuthClient, GoogleOAuthConfig
from common.locked_row import LockedRows
from common.logging import configure_logging
from common.metered_http import metered_client
from common.quota import GBP_APIS, TOKEN, Pacer, QuotaGovernor
from common.startup_checks import log_startup_warnings
from common.tasks import NOTIFY_INCIDENT_CLOSED, NOTIFY_INCIDENT_OPENED, send
from common.token_service import TokenService


@dataclass
class Container:
    """Everything a service needs, built once by its bootstrap."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    cipher: TokenCipher
    http: httpx.Client
    oauth: GoogleOAuthClient
    gbp: GbpClient
    tokens: TokenService
    broker: dramatiq.Broker | None = None
    quota: Pacer = field(default_factory=Pacer)
    extra: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        self.http.close()
        if self.tokens.locked_rows is not None:
            self.tokens.locked_rows.close()
        self.engine.dispose()


def broker_publisher(broker: dramatiq.Broker) -> Publisher:
    """Publishes domain events as notifier messages (called after the causing transaction commits)."""

    def publish(events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, IncidentOpened):
                send(broker, NOTIFY_INCIDENT_OPENED, event.incident_id)
            elif isinstance(event, IncidentClosed):
                send(broker, NOTIFY_INCIDENT_CLOSED, event.incident_id)

    return publish


def google_apis(settings: Settings) -> dict[str, str]:
    """Each configured Google endpoint and the API name its calls are counted under."""
    return {
        settings.google_token_url: "token",
        settings.google_revoke_url: "revoke",
        settings.gbp_account_management_url: "account_management",
        settings.gbp_business_information_url: "business_information",
        settings.gbp_performance_url: "performance",
    }


def bootstrap(
    settings: Settings | None = None,
    *,
    broker: dramatiq.Broker | None = None,
    configure_logs: bool = True,
    pool_size: int = 10,
) -> Container:
    """Build the container; with a broker, incident events are published to the notifier."""
    settings = settings or load_settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)
    log_startup_warnings(settings)
    engine = make_engine(settings.database_url, pool_size=pool_size)
    sessions = make_sessionmaker(engine)
    cipher = TokenCipher.from_spec(settings.token_encryption_keys.reveal())
    timeout = settings.http_timeout_seconds
    budgets: dict[str, int | None] = {api: settings.gbp_qpm for api in GBP_APIS}
    budgets[TOKEN] = settings.google_token_qpm or None
    quota = QuotaGovernor(engine, budgets)
    http = metered_client(
        google_apis(settings),
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        limits=httpx.Limits(max_connections=max(20, pool_size * 2), max_keepalive_connections=max(20, pool_size * 2)),
    )
    oauth = GoogleOAuthClient(
        GoogleOAuthConfig(
            client_id=settings.google_client_id,
            client_secret=settings.google_client_secret.reveal(),
            auth_url=settings.google_auth_url,
            token_url=settings.google_token_url,
            revoke_url=settings.google_revoke_url,
            timeout_seconds=timeout,
        ),
        http=http,
        pacer=quota,
    )
    gbp = GbpClient(
        GbpUrls(
            settings.gbp_account_management_url, settings.gbp_business_information_url, settings.gbp_performance_url
        ),
        http,
        quota,
    )
    publish = broker_publisher(broker) if broker is not None else discard
    # PostgreSQL: refreshes lock and write on a pool of their own, opened at the first refresh (common.locked_row),
    # sized like the engine's (2 x pool_size, opened on demand): a worker's sync and fleet threads may all refresh.
    locked_rows = (
        LockedRows(settings.database_url, max_size=2 * pool_size) if engine.dialect.name == "postgresql" else None
    )
    tokens = TokenService(
        sessions,
        cipher,
        oauth,
        publish=publish,
        lock_timeout_seconds=settings.lock_timeout_seconds,
        locked_rows=locked_rows,
    )
    return Container(settings, engine, sessions, cipher, http, oauth, gbp, tokens, broker, quota)
