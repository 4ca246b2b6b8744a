"""Scheduler run keys: a scheduled job's fire is claimed once, under a unique key, before its work fans out.

Duplicate fires happen: two schedulers running, a scheduler restarted within the minute it fired,
the start-up catch-up racing a regular fire. Each sends `refresh_all` with the same `scheduled_at`;
whoever processes it calls `claim_run` first and drops the message when the run was claimed already.
"""

from __future__ import annotations

import datetime as dt

from dramatiq.middleware import CurrentMessage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from common.logging import get_logger
from common.models import SchedulerRun

log = get_logger("integrations.scheduling")


def scheduled_minute(scheduled_at: str | dt.datetime) -> dt.datetime:
    """`scheduled_at` (ISO 8601 with an offset, as periodiq and our scheduler send it) as a UTC minute."""
    when = dt.datetime.fromisoformat(scheduled_at) if isinstance(scheduled_at, str) else scheduled_at
    if when.tzinfo is None:
        raise ValueError(f"scheduled_at has no UTC offset: {scheduled_at!r}")
    return when.astimezone(dt.UTC).replace(second=0, microsecond=0)


def run_key(job: str, scheduled_at: str | dt.datetime) -> str:
    """`job@YYYY-MM-DDTHH:MMZ`: one key per job and scheduled minute, whatever offset it was written with."""
    return f"{job}@{scheduled_minute(scheduled_at):%Y-%m-%dT%H:%M}Z"


def claim_run(
    sessions: sessionmaker[Session], job: str, scheduled_at: str | dt.datetime, *, message_id: str | None = None
) -> bool:
    """Record this run of `job`; False when it was claimed already (a duplicate fire: drop the message).

    With `message_id`, a redelivery of the message that made the claim claims again (True), so a
    worker killed in the middle of the run does not lose it; any other message for the run gets False.
    """
    key = run_key(job, scheduled_at)
    try:
        with sessions.begin() as s:
            s.add(
                SchedulerRun(run_key=key, job=job, scheduled_for=scheduled_minute(scheduled_at), message_id=message_id)
            )
        return True
    except IntegrityError:
        if message_id is None:
            return False
    with sessions() as s:
        claimed_by = s.scalar(select(SchedulerRun.message_id).where(SchedulerRun.run_key == key))
    return claimed_by == message_id


def run_claimed(sessions: sessionmaker[Session], job: str, scheduled_at: str | dt.datetime) -> bool:
    """Whether a run of `job` at `scheduled_at` was claimed (processed or being processed)."""
    with sessions() as s:
        return s.get(SchedulerRun, run_key(job, scheduled_at)) is not None


def claim_scheduled_message(sessions: sessionmaker[Session], job: str) -> bool:
    """In the actor running `job`: whether to go ahead with the message being processed.

    A message without `scheduled_at` (a manual `make refresh`) always goes ahead; a scheduled one only
    when it claims its run (a duplicate fire is logged and dropped).
    """
    message = CurrentMessage.get_current_message()
    scheduled_at = message.options.get("scheduled_at") if message is not None else None
    if message is None or scheduled_at is None:
        return True
    key = run_key(job, scheduled_at)
    if claim_run(sessions, job, scheduled_at, message_id=message.message_id):
        log.info("scheduler.run.claimed", job=job, run_key=key, message_id=message.message_id)
        return True
    log.info("scheduler.run.duplicate", job=job, run_key=key, message_id=message.message_id)
    return False
