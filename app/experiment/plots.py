"""Inline SVG line charts: no JavaScript, no fonts or files to fetch, so the report reads offline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


@dataclass(frozen=True)
class Series:
    label: str
    xs: list[float]
    ys: list[float]


def _nice_max(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return float(next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value))


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def line_chart(title: str, x_label: str, y_label: str, series: list[Series], marker_x: float | None = None) -> str:
    """An SVG chart (class `plot`); points with a non-finite y are left out of their line."""
    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
    x_min = min((x for x, _ in points), default=0.0)
    x_max = max((x for x, _ in points), default=1.0)
    if x_max <= x_min:
        x_max = x_min + 1.0
    y_max = _nice_max(max((y for _, y in points), default=1.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_min) / (x_max - x_min) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - y / y_max * plot_h

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for tick in range(5):
        y_value = y_max * tick / 4
        x_value = x_min + (x_max - x_min) * tick / 4
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(y_value):.1f}" y2="{py(y_value):.1f}" '
                     'stroke="#eee"/>')  # fmt: skip
        parts.append(f'<text x="{LEFT - 6}" y="{py(y_value) + 4:.1f}" text-anchor="end" font-size="11">'
                     f"{_fmt(y_value)}</text>")  # fmt: skip
        parts.append(f'<text x="{px(x_value):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" font-size="11">'
                     f"{_fmt(x_value)}</text>")  # fmt: skip
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12">'
                 f"{escape(x_label)}</text>")  # fmt: skip
    parts.append(f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" font-size="12" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>')  # fmt: skip
    if marker_x is not None and math.isfinite(marker_x):
        mx = px(marker_x)
        parts.append(f'<line class="knee" x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
                     'stroke="#000" stroke-dasharray="4 3"/>')  # fmt: skip
        parts.append(f'<text x="{mx + 4:.1f}" y="{TOP + 12}" font-size="11">knee</text>')
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        pairs = [(px(x), py(y)) for x, y in zip(one.xs, one.ys, strict=True) if math.isfinite(x) and math.isfinite(y)]
        if pairs:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pairs)
            parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
            if len(pairs) < 40:
                parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pairs]
        legend_y = TOP + 14 + 14 * index
        parts.append(f'<rect x="{LEFT + 8}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{LEFT + 22}" y="{legend_y}" font-size="11">{escape(one.label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
