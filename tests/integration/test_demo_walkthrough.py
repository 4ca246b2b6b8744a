"""The demo walkthrough in this process, with the scheduler's run keys around "now" already claimed.

CI once ran `make demo` at 02:00 UTC: the in-process scheduler's start-up catch-up claimed the run key
`refresh_all@…T02:00Z`, the demo's own "nightly run" message carried a `scheduled_at` in that same minute,
the worker dropped it as a duplicate fire, and step 7 timed out. Claiming the keys of the minutes around
now reproduces that at any hour.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest

from common.scheduling import claim_run
from common.tasks import REFRESH_ALL
from services.demo import Demo, demo_environment
from services.standalone import start_system
from tests.support.net import free_port


@pytest.fixture
def system(tmp_path, monkeypatch):
    """The standalone system as `make demo` starts it, in this process."""
    monkeypatch.chdir(tmp_path)
    env = demo_environment({"PATH": "/usr/bin:/bin"}, tmp_path / "demo", free_port())
    (tmp_path / "demo").mkdir()
    running = start_system(env, configure_logs=False)
    yield running
    running.stop()


@pytest.mark.timeout(180)
def test_demo_nightly_step_runs_although_the_scheduler_owns_this_minute(system, capsys):
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    for offset in range(-2, 6):
        claim_run(system.container.sessions, REFRESH_ALL, minute + dt.timedelta(minutes=offset))
    Demo(system).run()
    out = capsys.readouterr().out
    assert "needs_reauth=True" in out
    assert "status=active needs_reauth=False" in out
    # Without SERVE=1 the system stops after the summary: no curl lines for a server that is gone.
    assert not [line for line in out.splitlines() if line.strip().startswith("curl ")]
    assert "make demo SERVE=1" in out


@pytest.mark.timeout(180)
def test_demo_serving_prints_curl_lines_that_work_and_a_bounded_insights_query(system, capsys):
    Demo(system, serve=True).run()
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("curl ")]
    assert len(lines) == 3
    for line in lines:
        done = subprocess.run(["sh", "-c", line + " -s -o /dev/null -w '%{http_code}'"], capture_output=True, text=True)
        assert done.stdout in ("200", "202"), (line, done.stdout)
    insights = subprocess.run(["sh", "-c", lines[2] + " -s"], capture_output=True, text=True).stdout
    week_ago = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=8)).isoformat()
    rows = json.loads(insights)
    assert rows and min(r["date"] for r in rows) >= week_ago  # a week, not the 90-day dump
