"""The API's reads and small writes, as plain functions of a sessionmaker (run them in a worker thread)."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, bindparam, literal, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from common.errors import IntegrationInactive, IntegrationNotFound
from common.health import unhealthy_integrations
from common.models import ACTIVE, Insight, Integration, User
from common.users import key_digest
from services.api.serialize import insight_json, integration_json

# A row's place in the answer's order: (date, location, metric).
InsightKey = tuple[dt.date, str, str]


def owned(s: Session, user_id: int, integration_id: int) -> Integration:
    """The caller's integration; someone else's is exactly as absent as a missing one."""
    row = s.get(Integration, integration_id)
    if row is None or row.user_id != user_id:
        raise IntegrationNotFound(f"integration {integration_id} does not exist")
    return row


def list_integrations(sessions: sessionmaker[Session], user_id: int) -> list[dict[str, Any]]:
    with sessions() as s:
        rows = s.execute(select(Integration).where(Integration.user_id == user_id).order_by(Integration.id)).scalars()
        return [integration_json(r) for r in rows]


def get_integration(sessions: sessionmaker[Session], user_id: int, integration_id: int) -> dict[str, Any]:
    with sessions() as s:
        return integration_json(owned(s, user_id, integration_id))


def authorize_work(sessions: sessionmaker[Session], api_key: str, integration_id: int) -> tuple[int, str] | None:
    """The (id, email) of the key's user, or None when the key is not valid; raises unless the integration
    is that user's and work (sync, refresh) can succeed for it without the user stepping in.

    One query for both (`work_check_statement`: the user by key hash, outer-joined to the integration), so
    the hot path `POST /integrations/{id}/sync` pays one pool checkout and one round trip, not two; the key
    is still checked against the database on every request.
    """
    digest = key_digest(api_key)
    if digest is None:
        return None
    with sessions() as s:
        row = s.execute(work_check_statement(), {"digest": digest, "integration_id": integration_id}).first()
    return work_check_result(None if row is None else row._mapping, digest, integration_id)


def work_check_statement() -> Select[int, str, str, int, str, bool, str | None]:
    """THE key + integration check of the work endpoints, one statement with the bound parameters
    `digest` and `integration_id`; the sync path (`authorize_work`) and the async path
    (`services.api.async_accept`) both run it and read its row with `work_check_result`."""
    return (
        select(
            User.id,
            User.email,
            User.api_key_hash,
            Integration.id.label("integration_id"),
            Integration.status,
            Integration.needs_reauth,
            Integration.last_sync_message,
        )
        .outerjoin(Integration, (Integration.id == bindparam("integration_id")) & (Integration.user_id == User.id))
        .where(User.api_key_hash == bindparam("digest"))
    )


def work_check_result(row: Mapping[Any, Any] | None, digest: str, integration_id: int) -> tuple[int, str] | None:
    """The outcome of `work_check_statement`'s first row (None: no row): see `authorize_work`."""
    if row is None or not hmac.compare_digest(row["api_key_hash"], digest):
        return None
    if row["integration_id"] is None:
        raise IntegrationNotFound(f"integration {integration_id} does not exist")
    if row["status"] != ACTIVE:
        raise IntegrationInactive(
            f"Integration {integration_id} is disconnected; connect the Google account again to sync it."
        )
    if row["needs_reauth"]:
        message = row["last_sync_message"]
        detail = f" ({message})" if message else ""
        raise IntegrationInactive(
            f"Integration {integration_id} needs re-authentication{detail}; reconnect it before syncing."
        )
    return row["id"], row["email"]


def list_insights(
    sessions: sessionmaker[Session],
    user_id: int,
    integration_id: int,
    start: dt.date,
    end: dt.date,
    *,
    after: InsightKey | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The rows of the range by (date, location, metric), those after `after` only, at most `limit`."""
    query = select(Insight).where(Insight.integration_id == integration_id, Insight.date >= start, Insight.date <= end)
    if after is not None:
        query = query.where(tuple_(Insight.date, Insight.location, Insight.metric) > tuple_(*map(literal, after)))
    query = query.order_by(Insight.date, Insight.location, Insight.metric).limit(limit)
    with sessions() as s:
        owned(s, user_id, integration_id)
        return [insight_json(r) for r in s.execute(query).scalars()]


def token_health(sessions: sessionmaker[Session], sync_interval_hours: float | None = None) -> list[dict[str, Any]]:
    """The health report (as `integrations health`): active integrations whose last sync or refresh failed,
    and those not synced for two sync intervals."""
    with sessions() as s:
        rows = unhealthy_integrations(s, sync_interval_hours)
        return [{**integration_json(row), "user_email": email} for row, email in rows]
