"""The demo walkthrough in this process, with the scheduler's run keys around "now" already claimed.

CI once ran `make demo` at 02:00 UTC: the in-process scheduler's start-up catch-up claimed the run key
`refresh_all@…T02:00Z`, the demo's own "nightly run" message carried a `scheduled_at` in that same minute,
the worker dropped it as a duplicate fire, and step 7 timed out. Claiming the keys of the minutes around
now reproduces that at any hour.
"""

from __future__ import annotations

import datetime as dt

import pytest

from common.scheduling import claim_run
from common.tasks import REFRESH_ALL
from services.demo import Demo, demo_environment
from services.standalone import start_system
from tests.support.net import free_port


@pytest.mark.timeout(180)
def test_demo_nightly_step_runs_although_the_scheduler_owns_this_minute(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    env = demo_environment({"PATH": "/usr/bin:/bin"}, tmp_path / "demo", free_port())
    (tmp_path / "demo").mkdir()
    system = start_system(env, configure_logs=False)
    try:
        minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        for offset in range(-2, 6):
            claim_run(system.container.sessions, REFRESH_ALL, minute + dt.timedelta(minutes=offset))
        Demo(system).run()
    finally:
        system.stop()
    out = capsys.readouterr().out
    assert "needs_reauth=True" in out
    assert "status=active needs_reauth=False" in out
