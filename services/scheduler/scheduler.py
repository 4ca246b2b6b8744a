"""The nightly scheduler: `refresh_all` at NIGHTLY_REFRESH_CRON in SCHEDULER_TIMEZONE, caught up once at start.

Every minute it also sweeps the notification outbox and queues its share of the periodic fleet syncs
(common/fleet_sync.py, SYNC_INTERVAL_HOURS).

periodiq provides the cron parsing, the `periodic` actor option, the `scheduled_at` message option and
the worker-side PeriodiqMiddleware (common/broker.py). Its own loop is not used, because it reads the
process's local time through pendulum and so:

- skips the run on the spring DST day and fires it twice on the autumn day when the cron names a time
  in the changing hour (02:00 in Europe/Paris; see common/cron.py, which fixes both);
- loses a run when the scheduler was down at the time (here: caught up once at start, see `catch_up`);
- sleeps on SIGALRM, which only works in the main thread of the main interpreter.

Duplicate fires (two schedulers, a restart within the minute) are sent, and the worker's `refresh_all`
drops all but the first with `common.scheduling.claim_run` before fanning out.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from sqlalchemy.orm import Session, sessionmaker

from common.cron import CronSchedule
from common.fleet_sync import schedule_due
from common.logging import get_logger
from common.models import utcnow
from common.scheduling import run_claimed, run_key
from common.tasks import REFRESH_ALL, REFRESH_QUEUE, send
from services.scheduler import housekeeping, outbox

CATCH_UP_WINDOW = dt.timedelta(hours=24)
SWEEP_EVERY_SECONDS = 60.0
RETRY_SECONDS = 5.0

log = get_logger("integrations.scheduler")


@dataclass
class NightlyScheduler:
    """Sends `refresh_all` with `scheduled_at` at each fire time; sweeps the outbox and old OAuth states each minute."""

    sessions: sessionmaker[Session]
    broker: dramatiq.Broker
    schedule: CronSchedule
    clock: Callable[[], dt.datetime] = field(default=utcnow)
    sweep_every_seconds: float = SWEEP_EVERY_SECONDS
    # SYNC_INTERVAL_HOURS: each sweep also queues its share of the periodic fleet syncs (None: off).
    fleet_interval_hours: float | None = None

    def catch_up(self, now: dt.datetime | None = None) -> str | None:
        """Send the last fire of the past 24 h when nobody claimed it (the scheduler was down); its message id."""
        now = now or self.clock()
        last = self.schedule.previous_fire(now, CATCH_UP_WINDOW)
        if last is None or run_claimed(self.sessions, REFRESH_ALL, last):
            return None
        return self.fire(last, catch_up=True)

    def fire(self, scheduled_for: dt.datetime, *, catch_up: bool = False) -> str:
        """Send `refresh_all` for the fire time `scheduled_for`; returns the message id."""
        scheduled_at = scheduled_for.astimezone(self.schedule.tz).isoformat()
        message_id = send(self.broker, REFRESH_ALL, scheduled_at=scheduled_at)
        log.info(
            "scheduler.fired",
            job=REFRESH_ALL,
            scheduled_at=scheduled_at,
            run_key=run_key(REFRESH_ALL, scheduled_for),
            message_id=message_id,
            catch_up=catch_up,
        )
        return message_id

    def run(self, stop: threading.Event) -> None:
        """Catch up, then fire and sweep until `stop` is set. Broker or database outages are retried."""
        now = self.clock()
        log.info(
            "scheduler.started",
            cron=str(self.schedule.spec),
            timezone=self.schedule.tz.key,
            next_fires=[t.isoformat() for t in self.schedule.next_fires(now, 3)],
        )
        caught_up = _attempt("scheduler.catch_up_failed", self.catch_up, now)
        next_fire = self.schedule.next_fire(now)
        if not caught_up:
            # Try the catch-up again shortly: the missed run's time stays due until it is sent.
            next_fire = min(next_fire, now + dt.timedelta(seconds=RETRY_SECONDS))
        last_sweep: dt.datetime | None = None
        next_sweep = now
        while not stop.is_set():
            now = self.clock()
            if now >= next_fire:
                sent = _attempt("scheduler.fire_failed", self._fire_latest, now)
                next_fire = self.schedule.next_fire(now) if sent else now + dt.timedelta(seconds=RETRY_SECONDS)
            if now >= next_sweep:
                since = (now - last_sweep).total_seconds() if last_sweep else self.sweep_every_seconds
                _attempt("outbox.sweep_failed", outbox.sweep, self.sessions, self.broker, now, since)
                _attempt("oauth_states.purge_failed", housekeeping.purge_oauth_states, self.sessions, now)
                if self.fleet_interval_hours:
                    _attempt(
                        "fleet.schedule_failed",
                        schedule_due,
                        self.sessions,
                        self.broker,
                        now,
                        self.fleet_interval_hours,
                    )
                last_sweep, next_sweep = now, now + dt.timedelta(seconds=self.sweep_every_seconds)
            wake = min(next_fire, next_sweep)
            stop.wait(max(0.0, min((wake - self.clock()).total_seconds(), self.sweep_every_seconds)))
        log.info("scheduler.stopped")

    def _fire_latest(self, now: dt.datetime) -> None:
        # After a stall (suspend, outage) several fires may be due: the latest stands for them all.
        due = self.schedule.previous_fire(now, CATCH_UP_WINDOW)
        if due is not None:
            self.fire(due)


def declare_periodic_stub(broker: dramatiq.Broker, schedule: CronSchedule) -> None:
    """Declare `refresh_all` with periodiq's `periodic` option, as periodiq tooling expects to find it.

    Its body never runs here (the worker owns the real actor), and a broker that already has the real
    one (everything in one process) keeps it.
    """
    if REFRESH_ALL in broker.actors:
        return

    def refresh_all(within_seconds: int | None = None) -> None:
        raise RuntimeError("refresh_all runs in the worker, not in the scheduler")

    dramatiq.actor(actor_name=REFRESH_ALL, queue_name=REFRESH_QUEUE, broker=broker, periodic=schedule.spec)(refresh_all)


def _attempt(event: str, work: Callable[..., Any], *args: Any) -> bool:
    try:
        work(*args)
    except Exception:  # the loop must survive a broker or database outage
        log.exception(event)
        return False
    return True
