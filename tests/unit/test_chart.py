"""The insights chart's geometry: round axis values, one line per location, gaps for days Google has not reported."""

from __future__ import annotations

import datetime as dt

from services.api.web.chart import HEIGHT, line_chart

START = dt.date(2026, 11, 1)
END = dt.date(2026, 11, 30)


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n)


def test_the_axis_shows_round_numbers_above_the_largest_value() -> None:
    chart = line_chart([("locations/1", day(0), 49), ("locations/1", day(1), 3)], START, END, {})
    assert [value for _, value in chart.y_ticks] == [0, 20, 40, 60, 80]


def test_one_line_per_location_named_by_its_title_or_else_its_resource_name() -> None:
    rows = [("locations/2", day(0), 5), ("locations/1", day(0), 7), ("locations/1", day(1), 9)]
    chart = line_chart(rows, START, END, {"locations/1": "Acme Bakery", "locations/2": ""})
    assert [line.label for line in chart.lines] == ["Acme Bakery", "locations/2"]
    assert len({line.colour for line in chart.lines}) == 2


def test_a_day_google_has_not_reported_is_a_gap_not_a_zero() -> None:
    chart = line_chart([("locations/1", day(0), 10), ("locations/1", day(10), 10)], START, END, {})
    points = chart.lines[0].points.split()
    assert len(points) == 2  # no invented zeros for the nine days between, nor for the days after
    assert all(float(p.split(",")[1]) < HEIGHT - 28 for p in points)


def test_no_rows_make_an_empty_chart() -> None:
    chart = line_chart([], START, END, {})
    assert chart.lines == [] and chart.y_ticks[-1][1] == 4
