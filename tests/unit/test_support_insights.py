"""The shared first-sync check tolerates a sync that ran before midnight UTC, and nothing else."""

from __future__ import annotations

import datetime as dt

import pytest

from services.fake_google import FakeGoogle
from tests.support.insights import assert_first_sync_stored, first_sync_values

EMAIL = "owner@example.com"


def test_todays_and_yesterdays_windows_pass_other_days_and_altered_values_fail():
    fake = FakeGoogle()
    today = dt.datetime.now(dt.UTC).date()
    assert_first_sync_stored(first_sync_values(fake, EMAIL, today), fake, EMAIL)
    assert_first_sync_stored(first_sync_values(fake, EMAIL, today - dt.timedelta(days=1)), fake, EMAIL)
    with pytest.raises(AssertionError):
        assert_first_sync_stored(first_sync_values(fake, EMAIL, today - dt.timedelta(days=2)), fake, EMAIL)
    altered = first_sync_values(fake, EMAIL, today)
    altered[next(iter(altered))] += 1
    with pytest.raises(AssertionError):
        assert_first_sync_stored(altered, fake, EMAIL)
    missing = first_sync_values(fake, EMAIL, today)
    missing.pop(next(iter(missing)))
    with pytest.raises(AssertionError):
        assert_first_sync_stored(missing, fake, EMAIL)
