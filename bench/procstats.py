"""What the kernel knows about a process: peak and current RSS, CPU seconds, children (Linux /proc)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _kb(value: str | None) -> float:
    return float(value.split()[0]) / 1024 if value else 0.0


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set size, in MiB (0 when it is gone)."""
    return round(_kb(_status(pid).get("VmHWM")), 1)


def rss_mb(pid: int) -> float:
    return round(_kb(_status(pid).get("VmRSS")), 1)


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process, its threads included; zeros when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its threads included), in seconds; 0 when it is gone."""
    return sum(cpu_times(pid))


def children(pid: int) -> list[int]:
    """Direct children of `pid`."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def pids_named(*names: str) -> list[int]:
    """Every process whose command name is one of `names` (for PostgreSQL's and RabbitMQ's CPU share)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() in names:
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / _TICKS, total / _TICKS


class CpuMeter:
    """CPU seconds spent by groups of processes between `start()` and `stop()`.

    A group is a function returning its current pids: processes that started during the measurement
    count in full, processes that ended during it are lost (their last seconds are not visible).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._before: dict[str, dict[int, float]] = {}
        self._machine = (0.0, 0.0)

    def start(self) -> CpuMeter:
        self._before = {name: {p: cpu_seconds(p) for p in pids()} for name, pids in self.groups.items()}
        self._machine = machine_cpu_seconds()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds per group, plus `machine_busy` and `machine_capacity` (cores x wall seconds)."""
        out: dict[str, float] = {}
        for name, pids in self.groups.items():
            before = self._before[name]
            out[name] = round(sum(max(0.0, cpu_seconds(p) - before.get(p, 0.0)) for p in pids()), 2)
        busy, total = machine_cpu_seconds()
        out["everything_else"] = round(max(0.0, busy - self._machine[0] - sum(out.values())), 2)
        out["machine_busy"] = round(busy - self._machine[0], 2)
        out["machine_capacity"] = round(total - self._machine[1], 2)
        return out


def cpu_seconds_self() -> float:
    return cpu_seconds(os.getpid())


def peak_rss_mb_self() -> float:
    return peak_rss_mb(os.getpid())
