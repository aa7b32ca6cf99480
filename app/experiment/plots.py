"""Inline SVG charts for the report: no JavaScript, no fonts or files to fetch, so the report reads offline.

A `Chart` says what to draw (series, step bands, knee and capacity marks, SLO limit lines, which axes are
logarithmic); `svg(chart)` draws it and decides nothing about the run. What lives here is how an axis reads:
round ticks (1, 2, 2.5, 5 x 10^n, or powers of ten on a log axis), thousands separators, elapsed time as mm:ss,
percentiles on the "nines" scale, and as many ticks as fit without their labels touching.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 520, 260
RIGHT, TOP, BOTTOM = 24, 10, 46
Y_TITLE_W = 24  # the rotated y-axis title's column, left of the tick labels
FONT = 12
CHAR_W = 0.62 * FONT  # a generous width of one character of the tick font
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
BAND_FILL = {"held": "#2ca02c", "broke": "#d62728", "warm-up": "#7f7f7f"}
MOST_TICKS_X, MOST_TICKS_Y = 10, 7  # fewer, even when more would fit: a grid to read by, not a ruler
DECADES_FOR_LOG = 50.0  # a positive range whose max/min reaches this spans decades: drawn on a log axis
NINES_TOP = 5.0  # the percentile axis ends at 99.999 (where Locust's 100%, the maximum, is drawn)


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: str | None = None
    dashed: bool = False


@dataclass(frozen=True)
class Mark:
    """A vertical line across the plot (the knee, the capacity), labelled at the top."""

    x: float
    label: str


@dataclass(frozen=True)
class Band:
    """A shaded stretch of the x axis (a step), `kind` one of BAND_FILL, labelled at the bottom when it fits."""

    x0: float
    x1: float
    label: str
    kind: str


@dataclass(frozen=True)
class Limit:
    """A horizontal line (an SLO limit)."""

    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    key: str  # the element id
    title: str
    x_kind: str  # "elapsed" (seconds, drawn mm:ss), "number", or "percentile" (drawn on the nines scale)
    x_label: str
    y_label: str
    series: Sequence[Series]
    marks: Sequence[Mark] = ()
    bands: Sequence[Band] = ()
    limits: Sequence[Limit] = ()
    x_log: bool = False
    y_log: bool = False
    note: str = ""
    points: bool = False  # dots at each point (few points, one per step)


def spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if math.isfinite(v) and v > 0]
    return len(positive) > 1 and max(positive) / min(positive) >= DECADES_FOR_LOG


def number(value: float) -> str:
    """A tick label: thousands separators, no trailing zeros, no exponent."""
    if value == 0:
        return "0"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".")


def elapsed(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(abs(whole), 3600)
    text = f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
    return ("-" if whole < 0 else "") + text


def nines(percent: float) -> float:
    """Position of a percentile on the nines scale: 90 -> 1, 99 -> 2, 99.9 -> 3; 100 at the end."""
    return NINES_TOP if percent >= 100 else min(NINES_TOP, -math.log10(1 - percent / 100))


@dataclass
class _Axis:
    low: float
    high: float
    log: bool
    length: float
    ticks: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def position(self, value: float) -> float:
        if self.log:
            value, low, high = math.log10(value), math.log10(self.low), math.log10(self.high)
        else:
            low, high = self.low, self.high
        return (value - low) / (high - low) * self.length


def _linear_ticks(low: float, high: float, most: int, steps: Sequence[float]) -> tuple[float, float, list[float]]:
    """Round ticks covering [low, high], at most `most` of them; the range grows to the outer ticks."""
    span = max(high - low, 1e-9)
    for magnitude_step in sorted(
        step * 10**exponent for exponent in range(math.floor(math.log10(span)) - 2, math.floor(math.log10(span)) + 2)
        for step in steps
    ):  # fmt: skip
        first, last = math.floor(low / magnitude_step + 1e-9), math.ceil(high / magnitude_step - 1e-9)
        if last - first + 1 <= most:
            ticks = [index * magnitude_step for index in range(first, last + 1)]
            return ticks[0], ticks[-1], ticks
    return low, high, [low, high]


def _log_ticks(low: float, high: float, most: int) -> tuple[float, float, list[float]]:
    low_exp, high_exp = math.floor(math.log10(low)), math.ceil(math.log10(high))
    if high_exp == low_exp:
        high_exp += 1
    for multiples in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0**e for e in range(low_exp, high_exp + 1) for m in multiples]
        ticks = [t for t in ticks if low / 1.0001 <= t <= high * 1.0001 or t in (10.0**low_exp, 10.0**high_exp)]
        ticks = sorted(t for t in ticks if 10.0**low_exp <= t <= 10.0**high_exp)
        if len(ticks) <= most:
            break
    while len(ticks) > most:  # very many decades: every other power of ten
        ticks = ticks[::2]
    return 10.0**low_exp, 10.0**high_exp, ticks


def _fit(low: float, high: float, length: float, vertical: bool, log: bool, label: Callable[[float], str],
         steps: Sequence[float]) -> _Axis:  # fmt: skip
    """As many ticks as fit: labels at least their own size apart (height on the y axis, width on the x axis)."""
    for most in range(MOST_TICKS_Y if vertical else MOST_TICKS_X, 1, -1):
        if log:
            axis_low, axis_high, ticks = _log_ticks(low, high, most)
        else:
            axis_low, axis_high, ticks = _linear_ticks(low, high, most, steps)
        axis = _Axis(axis_low, axis_high, log, length, ticks, [label(t) for t in ticks])
        positions = [axis.position(t) for t in ticks]
        gaps = [b - a for a, b in itertools.pairwise(positions)]
        needed = 1.5 * FONT if vertical else max(len(text) for text in axis.labels) * CHAR_W + 10
        if not gaps or min(gaps) >= needed:
            return axis
    return axis


def _x_axis(chart: Chart, xs: list[float], length: float) -> _Axis:
    if chart.x_kind == "percentile":  # Locust's percentiles start at the median
        ticks = [nines(50), 1.0, 2.0, 3.0, 4.0, NINES_TOP]
        return _Axis(ticks[0], NINES_TOP, False, length, ticks, ["50", "90", "99", "99.9", "99.99", "max"])
    low, high = min(xs, default=0.0), max(xs, default=1.0)
    if chart.x_log and low > 0:
        return _fit(low, high, length, False, True, number, ())
    if high <= low:
        low, high = low - 1, high + 1
    if chart.x_kind == "elapsed":
        # Round times: 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1 h ... expressed as multiples of a power of ten.
        seconds = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
        for step in seconds:
            first, last = math.floor(low / step), math.ceil(high / step)
            ticks = [index * step for index in range(first, last + 1)]
            axis = _Axis(ticks[0], ticks[-1], False, length, [float(t) for t in ticks], [elapsed(t) for t in ticks])
            positions = [axis.position(t) for t in ticks]
            gap = min((b - a for a, b in itertools.pairwise(positions)), default=length)
            if len(ticks) <= 12 and gap >= max(len(text) for text in axis.labels) * CHAR_W + 10:
                return axis
        return axis
    return _fit(low, high, length, False, False, number, (1, 2, 2.5, 5))


def _y_axis(chart: Chart, ys: list[float], length: float) -> _Axis:
    values = ys + [limit.y for limit in chart.limits]
    if chart.y_log:
        positive = [y for y in values if y > 0]
        return _fit(min(positive, default=1.0), max(positive, default=10.0), length, True, True, number, ())
    high = max(values, default=1.0)
    return _fit(min(0.0, min(values, default=0.0)), high if high > 0 else 1.0, length, True, False, number,
                (1, 2, 2.5, 5))  # fmt: skip


def _text(x: float, y: float, text: str, anchor: str = "middle", cls: str = "", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{FONT}"'
        f"{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}{extra}>{escape(text)}</text>"
    )


def svg(chart: Chart) -> str:
    """The chart as a `<figure>`: the SVG (class `plot`) and an HTML legend that wraps on narrow screens."""
    plot_h = HEIGHT - TOP - BOTTOM

    def usable(x: float, y: float) -> bool:
        if not (math.isfinite(x) and math.isfinite(y)):
            return False
        return (x > 0 or not chart.x_log) and (y > 0 or not chart.y_log)

    def x_value(x: float) -> float:
        return nines(x) if chart.x_kind == "percentile" else x

    points = [(x_value(x), y) for s in chart.series for x, y in zip(s.xs, s.ys, strict=True) if usable(x, y)]
    band_xs = [x for band in chart.bands for x in (band.x0, band.x1)]
    y_axis = _y_axis(chart, [y for _, y in points], plot_h)
    left = round(Y_TITLE_W + max(len(label) for label in y_axis.labels) * CHAR_W + 10)  # the widest tick label fits
    plot_w = WIDTH - left - RIGHT
    x_axis = _x_axis(chart, [x for x, _ in points] + band_xs, plot_w)

    def px(x: float) -> float:
        return left + x_axis.position(min(max(x, x_axis.low), x_axis.high))

    def py(y: float) -> float:
        return TOP + plot_h - y_axis.position(min(max(y, y_axis.low), y_axis.high))

    parts = [
        f'<svg class="plot" id="{escape(chart.key)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" role="img" aria-label="{escape(chart.title)}">'
    ]
    for band in chart.bands:
        x0, x1 = px(band.x0), px(band.x1)
        fill = BAND_FILL.get(band.kind, "#7f7f7f")
        parts.append(f'<rect class="band {escape(band.kind)}" x="{x0:.1f}" y="{TOP}" width="{max(0.5, x1 - x0):.1f}" '
                     f'height="{plot_h}" fill="{fill}" fill-opacity="0.10"/>')  # fmt: skip
        if band.label and x1 - x0 >= len(band.label) * CHAR_W + 4:
            parts.append(_text((x0 + x1) / 2, TOP + plot_h - 5, band.label, cls="band-label", extra=' fill="#555"'))
    for tick, label in zip(y_axis.ticks, y_axis.labels, strict=True):
        y = py(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(_text(left - 6, y + FONT / 3, label, "end", "tick y"))
    for tick, label in zip(x_axis.ticks, x_axis.labels, strict=True):
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" stroke="#888"/>')
        parts.append(_text(x, TOP + plot_h + 8 + FONT, label, "middle", "tick x"))
    parts.append(f'<rect x="{left}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    parts.append(_text(left + plot_w / 2, HEIGHT - 6, chart.x_label, cls="axis-title"))
    parts.append(_text(Y_TITLE_W / 2 + 2, TOP + plot_h / 2, chart.y_label, cls="axis-title",
                       extra=f' transform="rotate(-90 {Y_TITLE_W / 2 + 2} {TOP + plot_h / 2:.1f})"'))  # fmt: skip
    for limit in chart.limits:
        y = py(limit.y)
        parts.append(f'<line class="limit" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#d62728" stroke-dasharray="6 3"/>')  # fmt: skip
    for index, one in enumerate(chart.series):
        colour = one.colour or COLOURS[index % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if one.dashed else ""
        # A point without a figure breaks the line: no line is drawn across a gap in the data.
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in zip(one.xs, one.ys, strict=True):
            if usable(x, y):
                runs[-1].append((px(x_value(x)), py(y)))
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) == 1 and not chart.points:
                parts.append(f'<circle class="series" cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="1.5" '
                             f'fill="{colour}"/>')  # fmt: skip
            elif run:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2"{dash} '
                             f'points="{path}"/>')  # fmt: skip
            if chart.points:
                parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>' for x, y in run]
    # Marks: labels stacked downwards from the top, each on the side of its line with more room.
    for index, mark in enumerate(sorted(chart.marks, key=lambda m: m.x)):
        x = px(mark.x)
        parts.append(f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#000" '
                     'stroke-dasharray="4 3"/>')  # fmt: skip
        right = x < left + plot_w / 2
        parts.append(_text(x + (4 if right else -4), TOP + FONT + 2 + index * (FONT + 4), mark.label,
                           "start" if right else "end", "mark-label",
                           ' paint-order="stroke" stroke="#fff" stroke-width="3"'))  # fmt: skip
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{one.colour or COLOURS[index % len(COLOURS)]}"></i>{escape(one.label)}</span>'
        for index, one in enumerate(chart.series)
    )
    legend += "".join(f'<span><i class="dash"></i>{escape(limit.label)}</span>' for limit in chart.limits)
    note = f'<p class="note">{escape(chart.note)}</p>' if chart.note else ""
    return (
        f'<figure class="chart"><figcaption>{escape(chart.title)}</figcaption>'
        f'<div class="plot-frame">{"".join(parts)}</div>'
        f'<div class="legend">{legend}</div>{note}</figure>'
    )


__all__ = ["Band", "Chart", "Limit", "Mark", "Series", "elapsed", "nines", "number", "spans_decades", "svg"]
