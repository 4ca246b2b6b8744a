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


def _nice_max(value: int) -> int:
    if value <= 4:
        return 4
    step: int = 10 ** (len(str(value)) - 1)
    return ((value + step - 1) // step) * step


def line_chart(rows: list[tuple[str, dt.date, int]], start: dt.date, end: dt.date, labels: dict[str, str]) -> Chart:
    """Chart geometry for (location, date, value) rows between `start` and `end` (missing days count as 0)."""
    days = max(1, (end - start).days)
    top = _nice_max(max((v for _, _, v in rows), default=0))
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
        points = " ".join(
            f"{x(start + dt.timedelta(d))},{y(values.get(start + dt.timedelta(d), 0))}" for d in range(days + 1)
        )
        lines.append(Line(labels.get(location, location), COLOURS[i % len(COLOURS)], points))
    y_ticks = [(y(top * k // 4), top * k // 4) for k in range(5)]
    x_ticks = [
        (x(start + dt.timedelta(d)), f"{start + dt.timedelta(d):%d %b}") for d in range(0, days + 1, max(1, days // 5))
    ]
    return Chart(WIDTH, HEIGHT, lines, y_ticks, x_ticks, y(0))
