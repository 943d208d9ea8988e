"""The canary panel's two small time charts as SVG geometry (pure).

From a rollout's analysed intervals (the API's `reads.interval_view` dicts, oldest
first) this computes what the service page's template draws as inline ``<svg>``: one
chart of the canary's and the primary's success rate, one of their p99 latency. Each
series is a list of polyline ``points`` strings, split where an interval has no figure
(a gap, never a drop to zero), plus a dot per figure so a lone point still shows;
and (`table`) the newest intervals as the text of the panel's table.

No script and no ``style=`` attribute reach the page (the dashboard's CSP forbids
inline style): the template colours series by class (``dashboard.css``), and the
chart's ``description`` says the figures in words for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The drawing's own coordinates (the viewBox); CSS scales it to the panel's width.
WIDTH = 320
HEIGHT = 120
# Room for the axis labels: values on the left, times below.
LEFT = 48
RIGHT = 8
TOP = 8
BOTTOM = 20
# What the table shows for a figure Prometheus did not have: an en dash, as elsewhere on
# the dashboard's pages.
NONE = "\u2013"


@dataclass(frozen=True)
class Tick:
    """An axis label and where it goes (x or y in the viewBox)."""

    at: float
    label: str


@dataclass(frozen=True)
class Series:
    """One role's line: polylines between gaps, and a dot per figure."""

    role: str  # "canary" or "primary": the template's class and legend
    segments: tuple[str, ...]  # SVG polyline ``points`` strings
    dots: tuple[tuple[float, float], ...]
    low: float | None  # the smallest figure shown; None when there is none
    high: float | None
    last: float | None  # the newest interval's figure (None: it had no data)


@dataclass(frozen=True)
class Chart:
    """One small chart, ready for the template."""

    key: str  # an id-safe name: "success", "p99"
    title: str
    description: str  # the figures in words: the SVG's <title>/<desc> and aria-label
    series: tuple[Series, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    empty: bool  # no figure at all: the template says so instead of drawing axes
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _time(value: Any) -> datetime:
    # The API's ISO time; SQLite hands back naive times, which the ledger writes in UTC.
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _figure(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _number(value: float) -> str:
    # Short coordinates keep the page small: a tenth of a viewBox unit is finer than a pixel.
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _x_positions(times: Sequence[datetime]) -> list[float]:
    """Each interval's x by its time, so a paused stretch shows as a stretch."""
    if not times:
        return []
    start, span = times[0], (times[-1] - times[0]).total_seconds()
    if span <= 0:
        return [(LEFT + WIDTH - RIGHT) / 2] * len(times)
    inner = WIDTH - RIGHT - LEFT
    return [LEFT + inner * (t - start).total_seconds() / span for t in times]


def _series(
    role: str, xs: Sequence[float], values: Sequence[float | None], y: Callable[[float], float]
) -> Series:
    segments: list[str] = []
    dots: list[tuple[float, float]] = []
    run: list[str] = []
    for x, value in zip(xs, values, strict=True):
        if value is None:
            if run:
                segments.append(" ".join(run))
            run = []
            continue
        point = (round(x, 1), round(y(value), 1))
        dots.append(point)
        run.append(f"{_number(point[0])},{_number(point[1])}")
    if run:
        segments.append(" ".join(run))
    shown = [v for v in values if v is not None]
    return Series(role, tuple(segments), tuple(dots), min(shown, default=None),
                  max(shown, default=None), values[-1] if values else None)  # fmt: skip


def _chart(
    key: str, title: str, intervals: Sequence[Mapping[str, Any]], fields: tuple[str, str],
    bounds: Callable[[float, float], tuple[float, float]], say: Callable[[float], str],
) -> Chart:  # fmt: skip
    times = [_time(i["at"]) for i in intervals]
    xs = _x_positions(times)
    columns = {role: [_figure(i[field]) for i in intervals]
               for role, field in zip(("canary", "primary"), fields, strict=True)}  # fmt: skip
    every = [v for values in columns.values() for v in values if v is not None]
    if not every:
        told = f"{_intervals(len(intervals))}, none with figures" if intervals else "no intervals"
        return Chart(key, title, f"{title}: {told}.", (), (), (), empty=True)
    low, high = bounds(min(every), max(every))
    inner = HEIGHT - BOTTOM - TOP

    def y(value: float) -> float:
        return TOP + inner * (high - value) / (high - low)

    series = tuple(_series(role, xs, values, y) for role, values in columns.items())
    clock = [t.strftime("%H:%M:%S") for t in (times[0], times[-1])]
    words = []
    for s in series:
        if s.low is None or s.high is None:
            words.append(f"{s.role}: no figures")
            continue
        last = say(s.last) if s.last is not None else "no data"
        words.append(f"{s.role}: newest {last}, lowest {say(s.low)}, highest {say(s.high)}")
    description = (f"{title}, {_intervals(len(intervals))} from {clock[0]} to {clock[1]} "
                   "UTC; " + "; ".join(words) + ".")  # fmt: skip
    # One moment (a single interval) gets one time label, under its dots.
    x_ticks = ((Tick(LEFT, clock[0]), Tick(WIDTH - RIGHT, clock[1])) if times[0] != times[-1]
               else (Tick(round(xs[0], 1), clock[0]),))  # fmt: skip
    return Chart(
        key, title, description, series,
        y_ticks=(Tick(round(y(high), 1), say(high)), Tick(round(y(low), 1), say(low))),
        x_ticks=x_ticks, empty=False,
    )  # fmt: skip


def _intervals(count: int) -> str:
    return "1 interval" if count == 1 else f"{count} intervals"


def _rate_bounds(low: float, high: float) -> tuple[float, float]:
    # From a whole percent below the lowest to 100 %, at least one point apart, so a
    # healthy 100 % sits on the top edge and a drop stands out.
    top = 100.0 if high <= 100.0 else high
    bottom = min(math.floor(low), top - 1.0)
    return max(0.0, bottom), top


def _latency_bounds(_low: float, high: float) -> tuple[float, float]:
    # From zero, so two lines' heights compare as ratios (the analysis' own margin).
    return 0.0, high * 1.1 if high > 0 else 0.001


def _percent(value: float) -> str:
    return f"{value:.2f} %".replace(".00 %", " %")


def _milliseconds(value: float) -> str:
    ms = value * 1000
    if ms == 0:
        return "0 ms"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def success_rate(intervals: Sequence[Mapping[str, Any]]) -> Chart:
    """Canary vs primary success rate (percent) over the intervals."""
    return _chart("success", "Success rate, canary vs primary", intervals,
                  ("canarySuccessRate", "primarySuccessRate"), _rate_bounds, _percent)  # fmt: skip


def p99(intervals: Sequence[Mapping[str, Any]]) -> Chart:
    """Canary vs primary p99 latency over the intervals."""
    return _chart("p99", "p99 latency, canary vs primary", intervals,
                  ("canaryP99Seconds", "primaryP99Seconds"), _latency_bounds,
                  _milliseconds)  # fmt: skip


def _pair(canary: Any, primary: Any, say: Callable[[float], str]) -> str:
    sides = [_figure(canary), _figure(primary)]
    return " / ".join(NONE if v is None else say(v) for v in sides)


def _count(value: float) -> str:
    return f"{value:.0f}"


def table(intervals: Sequence[Mapping[str, Any]], *, limit: int = 12) -> list[dict[str, str]]:
    """The newest ``limit`` intervals for the panel's table, newest first, as text:
    canary / primary side by side, `NONE` where there was no figure; steps counted from 1,
    as people (and the workers' progress lines) count them."""
    rows = []
    for i in list(intervals)[-limit:][::-1] if limit > 0 else []:
        at = _time(i["at"])
        rows.append({
            "at": at.isoformat(timespec="seconds"), "time": at.strftime("%H:%M:%S"),
            "step": str(i["step"] + 1), "weight": f"{i['weight']} %", "verdict": str(i["verdict"]),
            "reason": str(i["reason"]),
            "successRate": _pair(i["canarySuccessRate"], i["primarySuccessRate"], _percent),
            "p99": _pair(i["canaryP99Seconds"], i["primaryP99Seconds"], _milliseconds),
            "requests": _pair(i["canaryRequests"], i["primaryRequests"], _count),
        })  # fmt: skip
    return rows
