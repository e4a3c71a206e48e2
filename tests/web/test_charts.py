"""The dashboard chart's geometry: round grid steps, one bar a day, heights to scale."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from mercato.web.admin.charts import HEIGHT, bar_chart, nice_step


def test_grid_steps_are_round_whole_numbers() -> None:
    assert [nice_step(v) for v in (0, 1, 1.25, 4, 7, 11, 24, 26, 155_000)] == [
        1, 1, 2, 5, 10, 20, 25, 50, 200_000,
    ]  # fmt: skip


def test_bars_are_drawn_to_scale_on_a_round_axis() -> None:
    first = date(2026, 11, 1)
    points = [(first + timedelta(days=i), v) for i, v in enumerate([0, 3, 5, 1])]
    chart = bar_chart(points, describe=lambda d, v: f"{d}: {v}")
    assert [t.label for t in chart.ticks] == ["0", "2", "4", "6", "8"]
    assert [b.value for b in chart.bars] == [0, 3, 5, 1]
    assert chart.bars[0].height == 0
    assert chart.bars[2].height / chart.bars[1].height == pytest.approx(5 / 3, rel=1e-3)
    assert all(0 <= b.y <= chart.baseline <= HEIGHT for b in chart.bars)
    assert chart.total == 9 and chart.peak == 5
    assert chart.bars[1].label == "2026-11-02: 3"
