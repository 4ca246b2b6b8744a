"""A server-rendered SVG line chart of daily values, one line per location: no script, no CDN."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
# Distinguishable for common colour-vision deficiencies (Okabe-Ito); the table below carries every number too.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: str  # the polyline's "x,y x,y ..." attribute


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[Line]
    y_ticks: list[tuple[float, int]]  # (y, value)
    x_ticks: list[tuple[float, str]]  # (x, label)
    baseline: float


def _tick_step(value: int, ticks: int = 4) -> int:
    """The smallest 1, 2 or 5 times 10^n step whose `ticks` steps reach `value` (round numbers on the axis)."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude * ticks >= value:
                return factor * magnitude
        magnitude *= 10


def line_chart(rows: list[tuple[str, dt.date, int]], start: dt.date, end: dt.date, labels: dict[str, str]) -> Chart:
    """Chart geometry for (location, date, value) rows between `start` and `end`."""
    days = max(1, (end - start).days)
    step = _tick_step(max((v for _, _, v in rows), default=0))
    top = step * 4
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: dt.date) -> float:
        return round(LEFT + plot_w * (day - start).days / days, 1)

    def y(value: int) -> float:
        return round(TOP + plot_h * (1 - value / top), 1)

    by_location: dict[str, dict[dt.date, int]] = {}
    for location, day, value in rows:
        by_location.setdefault(location, {})[day] = value
    lines = []
    for i, (location, values) in enumerate(sorted(by_location.items())):
        # Only the days Google reported: a missing day (recent days arrive late) is a gap, not a zero.
        points = " ".join(f"{x(day)},{y(value)}" for day, value in sorted(values.items()))
        lines.append(Line(labels.get(location) or location, COLOURS[i % len(COLOURS)], points))
    y_ticks = [(y(step * k), step * k) for k in range(5)]
    x_ticks = [
        (x(start + dt.timedelta(d)), f"{start + dt.timedelta(d):%d %b}") for d in range(0, days + 1, max(1, days // 5))
    ]
    return Chart(WIDTH, HEIGHT, lines, y_ticks, x_ticks, y(0))
