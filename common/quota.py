"""The quota governor: every process's Google calls paced within one per-API budget, kept in the database.

Each API has one `google_quota` row holding a GCRA "theoretical arrival time" (`tat`) and the current
spacing between calls (`interval`, 60/QPM seconds). Taking a slot is one short autocommit UPDATE that
moves `tat` on by one interval and returns the slot's time; the caller then sleeps until it holding no
connection and no lock. Every process on every host shares the row, so together they stay in budget.
Built on the database the stack already has: no new server, no protocol of our own.

Priority: work a person asked for may reserve up to USER_MAX_WAIT ahead; fleet work (the `lane`
context variable says which) only reserves while the horizon is short (FLEET_HORIZON) and otherwise
sleeps and tries again, so a user's call always finds a slot near the front.

Adaptive: a 429 widens the interval (x1.5, capped) and, for FLOOR_SECONDS, keeps the pace at 80% of
the rate that was refused; every slot taken narrows the interval again, additively in rate, down to
that floor (then, once it expires, to 60/QPM). A quota lower than configured (another app in the same
Cloud project) converges to a pace with no 429s.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from common.errors import QuotaExceeded
from common.models import GoogleQuota

ACCOUNT_MANAGEMENT = "account_management"
BUSINESS_INFORMATION = "business_information"
PERFORMANCE = "performance"
TOKEN = "token"
GBP_APIS = (ACCOUNT_MANAGEMENT, BUSINESS_INFORMATION, PERFORMANCE)

USER, FLEET = "user", "fleet"
USER_MAX_WAIT = 30.0  # a user's call waits at most this long for its slot, else it is deferred
FLEET_HORIZON = 1.0  # fleet calls only reserve slots this close to now
FLEET_MAX_WAIT = 60.0  # a fleet call that found no slot for this long is deferred
SAFETY = 0.97  # pace at 97% of the budget: network jitter must not put 121 calls in Google's 60 s window
BACKOFF, CAP = 1.5, 16.0  # a 429 multiplies the interval, up to CAP x the budget's
RECOVERY = 0.01  # each slot taken adds 1% of the budget's rate back
# The first 429 of an episode (none for EPISODE_SECONDS before) caps the pace at 80% of the refused rate
# for FLOOR_SECONDS; 429s within it go on slowing down (x1.5 at most every DEBOUNCE_SECONDS: the
# concurrent 429s of one burst count once) until Google's window has drained.
FLOOR_MARGIN, FLOOR_SECONDS = 1.25, 600.0
DEBOUNCE_SECONDS, EPISODE_SECONDS = 2.0, 30.0

lane: contextvars.ContextVar[str] = contextvars.ContextVar("quota_lane", default=USER)


@contextlib.contextmanager
def fleet_lane() -> Iterator[None]:
    """Run the block's Google calls as background fleet work (they give way to user work)."""
    token = lane.set(FLEET)
    try:
        yield
    finally:
        lane.reset(token)


@dataclass(frozen=True)
class QuotaUse:
    """One API's budget and use, for `integrations quota`."""

    api: str
    budget_qpm: int | None
    used_last_minute: int
    throttled_total: int
    current_qpm: float | None


class Pacer:
    """No pacing: the default for clients built without a governor (tests of the clients alone)."""

    def acquire(self, api: str) -> None:
        """Wait for a slot to call `api`; raise QuotaExceeded when the work should be deferred instead."""

    def throttled(self, api: str, retry_after: float | None = None) -> None:
        """Google answered 429 for `api`: slow down."""


class QuotaGovernor(Pacer):
    """Paces calls per API against budgets shared through the `google_quota` table."""

    def __init__(
        self,
        engine: Engine,
        budgets: Mapping[str, int | None],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # One statement per connection use; on SQLite (our own BEGIN, see common/db.py) each is committed.
        self._engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if engine.dialect.name == "postgresql" else engine
        )
        self._budgets = dict(budgets)
        self._sleep = sleep
        self._clock = clock
        self._pg = engine.dialect.name == "postgresql"
        self._ready: set[str] = set()

    def acquire(self, api: str) -> None:
        budget = self._budgets.get(api)
        if not budget:
            return
        self._ensure_row(api, budget)
        fleet = lane.get() == FLEET
        max_ahead = FLEET_HORIZON if fleet else USER_MAX_WAIT
        give_up = time.monotonic() + FLEET_MAX_WAIT
        while True:
            reserved, now, slot = self._reserve(api, max_ahead)
            if reserved:
                if slot > now:
                    self._sleep(slot - now)
                return
            wait = slot - now - max_ahead
            if not fleet or time.monotonic() + wait > give_up:
                raise QuotaExceeded(
                    api, "quota_busy", f"No {api} slot within {max_ahead:g}s", retry_after=max(1.0, slot - now)
                )
            # Fleet work waits its turn off the database, waking at random within a slot or two.
            self._sleep(wait + random.uniform(0, 2 * self._base(budget)))

    def throttled(self, api: str, retry_after: float | None = None) -> None:
        budget = self._budgets.get(api)
        if not budget:
            return
        self._ensure_row(api, budget)
        pause = retry_after or 0.0
        sql = """
            UPDATE google_quota SET
              throttled_total = throttled_total + 1,
              floor_interval = CASE WHEN {now} - last_throttled > :episode
                THEN {least}(base_interval * :cap, interval * :margin) ELSE floor_interval END,
              floor_until = {now} + :floor_seconds,
              interval = CASE WHEN {now} - last_throttled > :debounce
                THEN {least}(base_interval * :cap, interval * :backoff) ELSE interval END,
              tat = {greatest}(tat, {now} + :pause),
              last_throttled = CASE WHEN {now} - last_throttled > :debounce THEN {now} ELSE last_throttled END
            WHERE api = :api
        """
        params = {
            "api": api,
            "debounce": DEBOUNCE_SECONDS,
            "episode": EPISODE_SECONDS,
            "cap": CAP,
            "margin": FLOOR_MARGIN,
            "floor_seconds": FLOOR_SECONDS,
            "backoff": BACKOFF,
            "pause": pause,
        }
        with self._engine.connect() as conn:
            conn.execute(text(self._sql(sql)), self._with_now(params))
            conn.commit()

    def usage(self) -> list[QuotaUse]:
        """Each budgeted API's budget, calls started in the last minute and 429s seen."""
        with self._engine.connect() as conn:
            rows = {r.api: r for r in conn.execute(select(GoogleQuota)).all()}
            now = float(conn.scalar(text(self._sql("SELECT {now}")), self._with_now({})) or 0.0)
        out: list[QuotaUse] = []
        for api in (*GBP_APIS, TOKEN):
            budget = self._budgets.get(api) or None
            row = rows.get(api)
            used = 0
            if row is not None:
                minute = int(now // 60) * 60
                used = row.window_count if row.window_start == minute else 0
                if row.window_start in (minute, minute - 60):
                    # The previous minute's calls, weighted by how much of it is still in the last 60 s.
                    prev = row.prev_window_count if row.window_start == minute else row.window_count
                    used += round(prev * (1 - (now - minute) / 60))
            qpm = round(60 / row.interval, 1) if row is not None and budget else None
            out.append(QuotaUse(api, budget, used, row.throttled_total if row else 0, qpm))
        return out

    def _base(self, budget: int) -> float:
        return 60.0 / (budget * SAFETY)

    def _ensure_row(self, api: str, budget: int) -> None:
        if api in self._ready:
            return
        base = self._base(budget)
        with self._engine.connect() as conn:
            exists = conn.scalar(select(GoogleQuota.base_interval).where(GoogleQuota.api == api))
            if exists is None:
                with contextlib.suppress(IntegrityError):  # another process inserted it first
                    conn.execute(
                        insert(GoogleQuota).values(
                            api=api,
                            tat=0.0,
                            last_slot=0.0,
                            interval=base,
                            base_interval=base,
                            floor_interval=base,
                            floor_until=0.0,
                            last_throttled=0.0,
                            throttled_total=0,
                            window_start=0.0,
                            window_count=0,
                            prev_window_count=0,
                        )
                    )
            elif exists != base:
                # GBP_QPM changed: the new budget applies from now on.
                conn.execute(
                    text(
                        "UPDATE google_quota SET base_interval = :b, interval = :b, floor_interval = :b, "
                        "floor_until = 0, tat = 0 "
                        "WHERE api = :api"
                    ),
                    {"b": base, "api": api},
                )
            conn.commit()
        self._ready.add(api)

    def _reserve(self, api: str, max_ahead: float) -> tuple[bool, float, float]:
        """Take the next slot when it is at most `max_ahead` from now: (taken, now, slot or current horizon)."""
        take = """
            UPDATE google_quota SET
              interval = {greatest}(
                CASE WHEN {now} < floor_until THEN floor_interval ELSE base_interval END,
                interval * base_interval / (base_interval + :recovery * interval)),
              last_slot = {greatest}(tat, {now}),
              tat = {greatest}(tat, {now}) + interval,
              prev_window_count = CASE WHEN window_start = {minute} THEN prev_window_count
                WHEN window_start = {minute} - 60 THEN window_count ELSE 0 END,
              window_count = CASE WHEN window_start = {minute} THEN window_count + 1 ELSE 1 END,
              window_start = {minute}
            WHERE api = :api AND {greatest}(tat, {now}) - {now} <= :max_ahead
            RETURNING {now} AS now, last_slot AS slot
        """
        params = self._with_now({"api": api, "max_ahead": max_ahead, "recovery": RECOVERY})
        with self._engine.connect() as conn:
            row = conn.execute(text(self._sql(take)), params).first()
            conn.commit()
            if row is not None:
                return True, float(row.now), float(row.slot)
            peek = conn.execute(
                text(self._sql("SELECT {now} AS now, tat FROM google_quota WHERE api = :api")), params
            ).one()
        return False, float(peek.now), float(peek.tat)

    def _sql(self, template: str) -> str:
        if self._pg:
            now = "extract(epoch from clock_timestamp())::float8"
            return template.format(now=now, minute=f"(floor({now} / 60) * 60)", greatest="greatest", least="least")
        return template.format(now=":now", minute=":minute", greatest="max", least="min")

    def _with_now(self, params: dict[str, object]) -> dict[str, object]:
        if self._pg:
            return params
        now = self._clock()
        return {**params, "now": now, "minute": float(int(now // 60) * 60)}
