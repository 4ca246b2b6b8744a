"""refresh_all: stream the integrations due for a refresh and publish one refresh message each."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from common.bootstrap import Container
from common.bulk_publish import publish_many
from common.logging import get_logger
from common.models import ACTIVE, OAUTH2, Integration, utcnow
from common.tasks import REFRESH_INTEGRATION, build_message

PAGE = 1000
PROGRESS_EVERY = 10_000
# A delayed message is held unacked by a consumer until it is due: stay under RabbitMQ's 30-minute timeout.
MAX_SPREAD_MS = 20 * 60_000

log = get_logger("integrations.refresh_all")


def _due(cutoff: dt.datetime) -> list[ColumnElement[bool]]:
    return [
        Integration.status == ACTIVE,
        Integration.auth_type == OAUTH2,
        or_(Integration.token_expires_at.is_(None), Integration.token_expires_at < cutoff),
    ]


def due_ids(sessions: sessionmaker[Session], cutoff: dt.datetime, page: int = PAGE) -> Iterator[int]:
    """Ids of active OAuth2 integrations whose token expires before `cutoff` (or is unknown), by id.

    Keyset pagination, one short transaction per page: memory stays constant at any fleet size.
    """
    last = 0
    while True:
        with sessions() as s:
            ids = list(
                s.scalars(
                    select(Integration.id)
                    .where(*_due(cutoff), Integration.id > last)
                    .order_by(Integration.id)
                    .limit(page)
                )
            )
        yield from ids
        if len(ids) < page:
            return
        last = ids[-1]


def count_due(sessions: sessionmaker[Session], cutoff: dt.datetime) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Integration).where(*_due(cutoff))) or 0)


def publish_refresh_all(c: Container, within_seconds: int, requested_at: str | None = None) -> int:
    """Publish `refresh_integration(id, within_seconds)` for every due integration; return the count.

    `requested_at` (the fan-out's time) goes with each message: a refresh done since then is not repeated.

    With REFRESH_SPREAD_SECONDS set, message i of n is delayed by i/n of the spread (capped at
    20 minutes) so a large fleet does not hit Google's quotas at once.
    """
    assert c.broker is not None, "refresh_all needs a broker"
    started = time.perf_counter()
    cutoff = utcnow() + dt.timedelta(seconds=within_seconds)
    spread_ms = min(c.settings.refresh_spread_seconds * 1000, MAX_SPREAD_MS)
    total = count_due(c.sessions, cutoff) if spread_ms > 0 else 0
    options = {"requested_at": requested_at} if requested_at else {}

    def messages() -> Iterator[tuple[dramatiq.Message[Any], int | None]]:
        for i, integration_id in enumerate(due_ids(c.sessions, cutoff)):
            delay = min(spread_ms, spread_ms * i // total) if total else 0
            yield build_message(REFRESH_INTEGRATION, integration_id, within_seconds, **options), delay or None
            if (i + 1) % PROGRESS_EVERY == 0:
                log.info("refresh_all.progress", published=i + 1, duration_ms=_ms(started))

    count = publish_many(c.broker, messages())
    log.info(
        "refresh_all.published",
        count=count,
        within_seconds=within_seconds,
        spread_seconds=spread_ms // 1000,
        duration_ms=_ms(started),
    )
    return count


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
