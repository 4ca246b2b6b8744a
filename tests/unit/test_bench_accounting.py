"""The API bench divides CPU measured over warm-up + run by every answer in that time, not the run's alone."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bench import api_accept, procstats
from bench.loadgen import Recorder


def test_the_recorder_counts_warm_up_answers_apart() -> None:
    rec = Recorder(measure_from=time.perf_counter() + 3600)  # everything below is warm-up
    rec.add(time.perf_counter(), 202)
    rec.add(time.perf_counter(), 503)
    assert rec.statuses == {} and rec.all_statuses == {"202": 1, "503": 1}
    rec.measure_from = 0.0
    rec.add(time.perf_counter(), 202)
    assert rec.statuses == {"202": 1} and rec.all_statuses == {"202": 2, "503": 1}


def test_cpu_per_request_is_divided_by_every_answer_of_the_measured_time(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([10.0, 13.0])  # 3 s of the server's CPU from before the warm-up to the end
    monkeypatch.setattr(procstats, "cpu_seconds", lambda pid: next(readings))

    def load() -> dict[str, Any]:
        return {"requests": 1000, "statuses": {"202": 1000}, "statuses_with_warmup": {"202": 1400, "503": 100}}

    result = api_accept._measured(1, load)
    assert result["server_cpu_ms_per_request"] == 2.0  # 3 s / 1,500 answers, not 3 s / 1,000
