"""Next-fire computation of the nightly schedule: default cron in UTC, and across DST changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from common.config import Settings
from common.cron import CronSchedule
from common.errors import ConfigError
from common.scheduling import run_key
from services.scheduler.outbox import is_due

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def local(fires: list[dt.datetime], tz: ZoneInfo = PARIS) -> list[str]:
    return [f.astimezone(tz).isoformat() for f in fires]


def test_default_settings_fire_daily_at_two_utc():
    s = Settings()
    schedule = CronSchedule.parse(s.nightly_refresh_cron, s.scheduler_timezone)
    assert local(schedule.next_fires(at("2026-11-27T12:34:56+00:00"), 3), ZoneInfo("UTC")) == [
        "2026-11-28T02:00:00+00:00",
        "2026-11-29T02:00:00+00:00",
        "2026-11-30T02:00:00+00:00",
    ]


def test_next_fire_is_strictly_after_and_crosses_month_and_year_ends():
    schedule = CronSchedule.parse("0 2 * * *")
    assert schedule.next_fire(at("2026-12-31T02:00:00+00:00")) == at("2027-01-01T02:00:00+00:00")
    assert schedule.next_fire(at("2026-12-31T01:59:59+00:00")) == at("2026-12-31T02:00:00+00:00")


def test_spring_forward_in_paris_fires_once_right_after_the_gap():
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST, so 02:00 does not exist that night.
    schedule = CronSchedule.parse("0 2 * * *", "Europe/Paris")
    assert local(schedule.next_fires(at("2026-03-27T12:00:00+00:00"), 4)) == [
        "2026-03-28T02:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:00:00+02:00",
        "2026-03-31T02:00:00+02:00",
    ]


def test_fall_back_in_paris_fires_once_at_the_first_two_oclock():
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:00-02:59 happens twice.
    schedule = CronSchedule.parse("0 2 * * *", "Europe/Paris")
    fires = schedule.next_fires(at("2026-10-23T12:00:00+00:00"), 4)
    assert local(fires) == [
        "2026-10-24T02:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-26T02:00:00+01:00",
        "2026-10-27T02:00:00+01:00",
    ]
    assert at("2026-10-25T01:00:00+00:00") not in fires  # the repeated 02:00 (CET) does not fire


def test_previous_fire_finds_the_missed_run_within_a_day():
    schedule = CronSchedule.parse("0 2 * * *", "Europe/Paris")
    day = dt.timedelta(hours=24)
    # Started during the repeated hour: the run of the night is the first 02:00, already past.
    assert schedule.previous_fire(at("2026-10-25T01:30:00+00:00"), day) == at("2026-10-25T00:00:00+00:00")
    assert schedule.previous_fire(at("2026-03-29T01:30:00+00:00"), day) == at("2026-03-29T01:00:00+00:00")
    assert schedule.previous_fire(at("2026-03-29T00:59:00+00:00"), day) == at("2026-03-28T01:00:00+00:00")
    assert schedule.previous_fire(at("2026-03-29T00:59:00+00:00"), dt.timedelta(hours=20)) is None


def test_weekday_and_step_fields():
    mondays = CronSchedule.parse("30 6 * * mon", "America/New_York")
    assert local(mondays.next_fires(at("2026-11-27T00:00:00+00:00"), 2), ZoneInfo("America/New_York")) == [
        "2026-11-30T06:30:00-05:00",
        "2026-12-07T06:30:00-05:00",
    ]
    sundays = CronSchedule.parse("0 0 * * 7")  # 7 is Sunday as well as 0
    assert sundays.next_fire(at("2026-11-27T00:00:00+00:00")) == at("2026-11-29T00:00:00+00:00")
    quarter = CronSchedule.parse("*/15 * * * *")
    assert quarter.next_fire(at("2026-11-27T10:07:00+00:00")) == at("2026-11-27T10:15:00+00:00")


@pytest.mark.parametrize("spec", ["0 2 * *", "61 2 * * *", "0 24 * * *", "x 2 * * *", "0 2 * * * *", ""])
def test_bad_cron_specs_are_config_errors(spec):
    with pytest.raises(ConfigError, match="NIGHTLY_REFRESH_CRON"):
        CronSchedule.parse(spec)


@pytest.mark.parametrize("spec", ["0 0 31 2 *", "0 0 30 2 *", "0 2 31 4,6,9,11 *"])
def test_a_spec_that_never_fires_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="NIGHTLY_REFRESH_CRON"):
        CronSchedule.parse(spec)


def test_unknown_time_zone_is_a_config_error():
    with pytest.raises(ConfigError, match="SCHEDULER_TIMEZONE"):
        CronSchedule.parse("0 2 * * *", "Mars/Olympus_Mons")


def test_run_key_is_the_same_minute_whatever_the_offset():
    assert run_key("refresh_all", "2026-03-29T03:00:00+02:00") == "refresh_all@2026-03-29T01:00Z"
    assert run_key("refresh_all", "2026-03-29T01:00:00.600000+00:00") == "refresh_all@2026-03-29T01:00Z"
    assert run_key("refresh_all", at("2026-03-29T01:00:59+00:00")) == "refresh_all@2026-03-29T01:00Z"
    with pytest.raises(ValueError, match="offset"):
        run_key("refresh_all", "2026-03-29T01:00:00")


def test_outbox_resends_with_backoff_then_hourly():
    sweeps = range(60, 3 * 3600 + 1, 60)  # a sweep a minute for three hours
    due_at_minutes = [age // 60 for age in sweeps if is_due(age, 60)]
    assert due_at_minutes == [1, 2, 4, 8, 16, 32, 60, 120, 180]
