"""The canary panel's charts: SVG geometry from a rollout's intervals (pure)."""

from __future__ import annotations

from typing import Any

from tenantry.server.dashboard import chart


def interval(second: int, canary: float | None, primary: float | None, *,
             p99: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:  # fmt: skip
    """One interval as the API shows it, ``second`` seconds after 12:00:00 UTC."""
    return {
        "at": f"2026-11-29T12:00:{second:02d}+00:00", "step": 0, "weight": 20,
        "verdict": "pass", "reason": "", "canaryRequests": 40.0, "primaryRequests": 160.0,
        "canarySuccessRate": canary, "primarySuccessRate": primary,
        "canaryP99Seconds": p99[0], "primaryP99Seconds": p99[1],
    }  # fmt: skip


def test_success_rates_are_drawn_by_time_from_a_whole_percent_below_to_100() -> None:
    drawn = chart.success_rate([interval(0, 100.0, 100.0), interval(10, 90.0, 100.0),
                                interval(40, 80.0, 100.0)])  # fmt: skip
    canary, primary = drawn.series
    # x by time: 0, 10 and 40 s over the plot's 48..312; y: 100 % at the top (8), 80 % at
    # the bottom (100).
    assert canary.segments == ("48,8 114,54 312,100",)
    assert primary.segments == ("48,8 114,8 312,8",)
    assert [t.label for t in drawn.y_ticks] == ["100 %", "80 %"]
    assert [t.label for t in drawn.x_ticks] == ["12:00:00", "12:00:40"]
    assert (canary.low, canary.high, canary.last) == (80.0, 100.0, 80.0)
    assert not drawn.empty


def test_an_interval_without_figures_is_a_gap_never_a_zero() -> None:
    drawn = chart.success_rate([interval(0, 100.0, 100.0), interval(10, None, 100.0),
                                interval(20, 99.0, None), interval(30, 98.0, 100.0)])  # fmt: skip
    canary, primary = drawn.series
    assert len(canary.segments) == 2 and len(canary.dots) == 3
    assert canary.segments[0] == "48,8"  # a lone figure: one point, drawn as its dot
    assert len(primary.segments) == 2 and len(primary.dots) == 3
    assert min(y for _, y in canary.dots) >= drawn.top
    assert max(y for _, y in canary.dots) <= drawn.bottom  # nothing fell to a zero line


def test_p99_starts_at_zero_and_reads_in_milliseconds() -> None:
    drawn = chart.p99([interval(0, 100.0, 100.0, p99=(0.012, 0.010)),
                       interval(5, 100.0, 100.0, p99=(0.220, 0.011))])  # fmt: skip
    canary, _ = drawn.series
    assert [t.label for t in drawn.y_ticks] == ["242 ms", "0 ms"]
    assert canary.dots[1][1] > drawn.top  # the highest figure is below the top edge
    assert "canary: newest 220 ms, lowest 12 ms, highest 220 ms" in drawn.description
    assert "primary: newest 11 ms, lowest 10 ms, highest 11 ms" in drawn.description


def test_the_description_says_the_figures_for_a_screen_reader() -> None:
    drawn = chart.success_rate([interval(0, 100.0, 100.0), interval(5, 97.5, None)])
    assert drawn.description == (
        "Success rate, canary vs primary, 2 intervals from 12:00:00 to 12:00:05 UTC; "
        "canary: newest 97.50 %, lowest 97.50 %, highest 100 %; "
        "primary: newest no data, lowest 100 %, highest 100 %."
    )


def test_no_figures_at_all_is_an_empty_chart_that_says_so() -> None:
    assert chart.p99([]).empty and chart.p99([]).description.endswith("no intervals.")
    quiet = chart.success_rate([interval(0, None, None), interval(5, None, None)])
    assert quiet.empty and quiet.series == ()
    assert quiet.description == "Success rate, canary vs primary: 2 intervals, none with figures."


def test_one_interval_or_one_value_still_has_a_height_and_a_place() -> None:
    drawn = chart.success_rate([interval(0, 100.0, 100.0)])
    canary, _ = drawn.series
    assert canary.dots == ((180.0, 8.0),)  # in the middle, on the 100 % edge
    assert [t.label for t in drawn.y_ticks] == ["100 %", "99 %"]
    assert [(t.at, t.label) for t in drawn.x_ticks] == [(180.0, "12:00:00")]  # one moment
    assert drawn.description.startswith("Success rate, canary vs primary, 1 interval from")
    flat = chart.p99([interval(0, 100.0, 100.0, p99=(0.0, 0.0))])
    assert [t.label for t in flat.y_ticks] == ["1.0 ms", "0 ms"]


def test_naive_times_are_utc_and_infinite_figures_are_no_data() -> None:
    naive = interval(0, 100.0, 100.0, p99=(float("inf"), 0.01))
    naive["at"] = "2026-11-29T12:00:00"
    drawn = chart.p99([naive])
    canary, primary = drawn.series
    assert canary.dots == () and primary.last == 0.01
    assert "from 12:00:00 to 12:00:00 UTC" in drawn.description


def test_the_table_is_the_newest_intervals_first_with_no_data_as_a_dash() -> None:
    every = [interval(n, 100.0, 100.0, p99=(0.012, 0.0101)) for n in range(15)]
    every[-1] = {**interval(14, None, 99.5), "canaryRequests": None, "verdict": "no-data"}
    rows = chart.table(every)
    assert len(rows) == 12 and [r["time"] for r in rows[:2]] == ["12:00:14", "12:00:13"]
    none = chart.NONE
    assert rows[0] == {
        "at": "2026-11-29T12:00:14+00:00", "time": "12:00:14", "step": "1", "weight": "20 %",
        "verdict": "no-data", "reason": "", "successRate": f"{none} / 99.50 %",
        "p99": f"{none} / {none}", "requests": f"{none} / 160",
    }  # fmt: skip
    assert (rows[1]["successRate"], rows[1]["p99"]) == ("100 % / 100 %", "12 ms / 10 ms")
    assert chart.table(every, limit=0) == []
