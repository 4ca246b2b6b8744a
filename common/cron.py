"""Cron schedules read in a time zone, with explicit rules for daylight-saving changes.

A five-field cron spec (parsed by periodiq) names wall-clock times in `SCHEDULER_TIMEZONE`. Two days
a year that wall clock misbehaves in zones with daylight saving time, and a nightly job at 02:00
local time sits right in it (Europe/Paris moves 02:00 -> 03:00 on the last Sunday of March and
03:00 -> 02:00 on the last Sunday of October):

- spring: 02:00-02:59 does not exist. periodiq alone wakes at 03:00, finds 03:00 does not match the
  spec and skips that night's run. Here a time in the gap fires once, at the first instant after it
  (03:00 summer time), as cron implementations traditionally do.
- autumn: 02:00-02:59 happens twice. periodiq alone fires twice. Here it fires once, at the first
  occurrence (summer time); the repeat hour never fires.

Safer still: schedule the nightly run outside 01:00-03:59 local time, or keep the default UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from periodiq import CronSpec, cron

from common.errors import ConfigError

UTC = dt.UTC
# "0 0 29 2 *" can be eight years apart across a non-leap century year.
_MAX_DAYS = 366 * 8 + 2
_BOUNDS = (("minute", 0, 59), ("hour", 0, 23), ("dom", 1, 31), ("month", 1, 12), ("dow", 0, 7))


@dataclass(frozen=True)
class CronSchedule:
    """A cron spec in a time zone; every time it returns is an aware UTC datetime."""

    spec: CronSpec
    tz: ZoneInfo

    @classmethod
    def parse(cls, spec: str, timezone: str = "UTC") -> CronSchedule:
        """Parse `spec` ("m h dom mon dow", or @daily and friends); ConfigError names what is wrong."""
        fields = spec.split()
        if not spec.strip().startswith("@") and len(fields) != 5:
            raise ConfigError(f"NIGHTLY_REFRESH_CRON must have five fields (m h dom mon dow), got {spec!r}")
        try:
            parsed = cron(spec)
        except (ValueError, KeyError, IndexError):
            raise ConfigError(f"NIGHTLY_REFRESH_CRON is not a valid cron spec: {spec!r}") from None
        for name, low, high in _BOUNDS:
            values = getattr(parsed, name)
            if not values or values[0] < low or values[-1] > high:
                raise ConfigError(f"NIGHTLY_REFRESH_CRON {name} field must be within {low}-{high}: {spec!r}")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"SCHEDULER_TIMEZONE is not a known time zone: {timezone!r}") from None
        schedule = cls(parsed, zone)
        try:
            schedule.next_fire(dt.datetime.now(UTC))  # "0 0 31 2 *" parses but names no real day
        except ConfigError:
            raise ConfigError(f"NIGHTLY_REFRESH_CRON never fires (no such day): {spec!r}") from None
        return schedule

    def __str__(self) -> str:
        return f"{self.spec} ({self.tz.key})"

    def next_fire(self, after: dt.datetime) -> dt.datetime:
        """The first fire time strictly after `after`."""
        for instant in self._forward(_local_date(after, self.tz)):
            if instant > after:
                return instant
        raise ConfigError(f"cron spec {self.spec} never fires")

    def next_fires(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        """The next `count` fire times after `after`."""
        fires: list[dt.datetime] = []
        for _ in range(count):
            after = self.next_fire(after)
            fires.append(after)
        return fires

    def previous_fire(self, at_or_before: dt.datetime, within: dt.timedelta) -> dt.datetime | None:
        """The last fire time in [at_or_before - within, at_or_before], or None."""
        earliest = at_or_before - within
        stop = _local_date(earliest, self.tz)
        day = _local_date(at_or_before, self.tz)
        while day >= stop:
            for instant in reversed(list(self._day(day))):
                if earliest <= instant <= at_or_before:
                    return instant
                if instant < earliest:
                    return None
            day -= dt.timedelta(days=1)
        return None

    def _forward(self, day: dt.date) -> Iterator[dt.datetime]:
        for offset in range(_MAX_DAYS):
            yield from self._day(day + dt.timedelta(days=offset))

    def _day(self, day: dt.date) -> Iterator[dt.datetime]:
        """The day's fire instants in order; wall times in a DST gap collapse onto the gap's end."""
        if not self._day_matches(day):
            return
        last: dt.datetime | None = None
        for hour in self.spec.hour:
            for minute in self.spec.minute:
                instant = resolve_wall_time(dt.datetime.combine(day, dt.time(hour, minute)), self.tz)
                if instant != last:
                    last = instant
                    yield instant

    def _day_matches(self, day: dt.date) -> bool:
        spec = self.spec
        if day.month not in spec.month:
            return False
        weekday = day.isoweekday() % 7
        dow_ok = weekday in spec.dow or (weekday == 0 and 7 in spec.dow)
        dom_ok = day.day in spec.dom
        if spec.is_dom_restricted and spec.is_dow_restricted:
            return dom_ok or dow_ok
        return dom_ok and dow_ok


def resolve_wall_time(wall: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of naive local `wall`: the first occurrence when repeated, the gap's end when skipped."""
    aware = wall.replace(tzinfo=tz, fold=0)
    if _exists(aware):
        return aware.astimezone(UTC)
    probe = wall
    for _ in range(24 * 60):
        probe += dt.timedelta(minutes=1)
        aware = probe.replace(tzinfo=tz, fold=0)
        if _exists(aware):
            return aware.astimezone(UTC)
    raise ValueError(f"no valid local time follows {wall} in {tz.key}")


def _exists(aware: dt.datetime) -> bool:
    round_trip = aware.astimezone(UTC).astimezone(aware.tzinfo)
    return round_trip.replace(tzinfo=None) == aware.replace(tzinfo=None, fold=0)


def _local_date(instant: dt.datetime, tz: ZoneInfo) -> dt.date:
    if instant.tzinfo is None:
        raise ValueError("naive datetime; pass an aware one")
    return instant.astimezone(tz).date()
