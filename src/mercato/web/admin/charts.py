"""Bar charts drawn on the server as SVG: the geometry here, the markup in
``admin/_chart.html``. No script and no inline style (the pages' CSP forbids both): the bars
are ``<rect>`` elements placed with SVG attributes and coloured by stylesheet classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 640
HEIGHT = 200
LEFT = 64  # room for the value axis's labels
RIGHT = 8
TOP = 10
BOTTOM = 24  # room for the day labels
GRID_LINES = 4


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    value: int
    label: str  # what the bar's <title> says (a tooltip, and what screen readers read)
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class DayLabel:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    left: int
    right: float  # x of the plot's right edge
    baseline: float  # y of the zero line
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    days: tuple[DayLabel, ...]
    total: int
    peak: int


def nice_step(value: float) -> int:
    """The smallest whole number of the form 1, 2, 2.5 or 5 times a power of ten that is at
    least ``value`` (and at least 1): grid lines a step apart fall on round numbers."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * power
        if candidate >= value and candidate == int(candidate):
            return int(candidate)
    return 10 * power  # pragma: no cover - 10 times the power always qualifies above


def bar_chart(
    points: Sequence[tuple[date, int]],
    *,
    describe: Callable[[date, int], str],
    axis_label: Callable[[int], str] = str,
) -> BarChart:
    """One bar per point (a day and its value, in order), on a scale from zero to a round
    number; ``describe`` writes each bar's title, ``axis_label`` the grid lines' labels."""
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    peak = max((v for _, v in points), default=0)
    step = nice_step(peak / GRID_LINES)
    top = step * GRID_LINES
    slot = plot_width / max(len(points), 1)
    gap = min(2.0, slot / 4)
    baseline = TOP + plot_height
    bars = []
    for i, (day, value) in enumerate(points):
        height = plot_height * max(value, 0) / top
        bars.append(
            Bar(
                day=day,
                value=value,
                label=describe(day, value),
                x=round(LEFT + i * slot + gap / 2, 2),
                y=round(baseline - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
            )
        )
    ticks = tuple(
        Tick(
            y=round(baseline - plot_height * k / GRID_LINES, 2),
            label=axis_label(step * k),
        )
        for k in range(GRID_LINES + 1)
    )
    days = tuple(
        DayLabel(x=round(LEFT + (i + 0.5) * slot, 2), label=f"{day:%b} {day.day}")
        for i, (day, _) in enumerate(points)
        if (len(points) - 1 - i) % 7 == 0  # every seventh day, counting back from the last
    )
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=baseline,
        bars=tuple(bars),
        ticks=ticks,
        days=days,
        total=sum(v for _, v in points),
        peak=peak,
    )
