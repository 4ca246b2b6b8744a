"""Housekeeping on the scheduler's sweep: OAuth states that can no longer be used are deleted.

A state is single-use and lives 10 minutes; once used or expired its row only answers "invalid state",
which a missing row answers the same way. Without this the table grows by one row per connect, forever.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from common.logging import get_logger
from common.models import OAuthState

BATCH = 5000

log = get_logger("integrations.housekeeping")


def purge_oauth_states(sessions: sessionmaker[Session], now: dt.datetime) -> int:
    """Delete used and expired OAuth states, in batches (short transactions); how many were deleted."""
    total = 0
    while True:
        with sessions.begin() as s:
            batch = (
                select(OAuthState.state_hash)
                .where(or_(OAuthState.used_at.is_not(None), OAuthState.expires_at <= now))
                .limit(BATCH)
            )
            result = s.execute(delete(OAuthState).where(OAuthState.state_hash.in_(batch)))
            deleted = int(cast("CursorResult[Any]", result).rowcount)
        total += deleted
        if deleted < BATCH:
            break
    if total:
        log.info("oauth_states.purged", count=total)
    return total
