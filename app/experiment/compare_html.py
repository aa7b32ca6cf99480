"""The HTML of a comparison of two runs: it draws what `compare.py` gives it and decides nothing."""

from __future__ import annotations

from html import escape
from typing import Any

from app.experiment.compare import STEP_FIGURES
from app.experiment.plots import Chart, svg
from app.experiment.report_html import STYLE, number

COMPARE_STYLE = """
td.better { color: #2a7d2a; font-weight: bold; } td.worse { color: #c00; font-weight: bold; }
th.group { text-align: center; }
"""
SHARES = ("failure_ratio",)


def _change(figure: dict[str, Any], share: bool = False) -> str:
    if figure["absolute"] is None:
        return "<td>&ndash;</td>"
    relative = figure["relative"]
    shown = (
        f"{relative:+.0%}"
        if relative is not None
        else ("+" if figure["absolute"] >= 0 else "") + number(figure["absolute"], share)
    )
    return f'<td class="{figure["verdict"]}">{escape(shown)}</td>'


def _headline_table(comparison: dict[str, Any]) -> str:
    a, b = comparison["a"], comparison["b"]

    def devices(value: int | None, missing: str) -> str:
        return missing if value is None else f"{value:,} devices"

    rows = [
        ("capacity", devices(a["capacity_devices"], "none found"), devices(b["capacity_devices"], "none found"),
         _change(comparison["capacity"])),
        ("knee", devices(a["knee_devices"], "not reached"), devices(b["knee_devices"], "not reached"),
         _change(comparison["knee"])),
        ("bottleneck", a["bottleneck"], b["bottleneck"], "<td>" + ("same" if a["bottleneck"] == b["bottleneck"]
                                                                   else "changed") + "</td>"),
        ("service workers", str(a["workers"]), str(b["workers"]), "<td></td>"),
        ("device cycle", f"{a['interval_s']:g} s", f"{b['interval_s']:g} s", "<td></td>"),
        ("SLO", a["slo"], b["slo"], "<td>" + ("same" if comparison["same_slo"] else "differs") + "</td>"),
    ]  # fmt: skip
    body = "".join(
        f'<tr><td class="name">{escape(label)}</td><td>{escape(one)}</td><td>{escape(two)}</td>{delta}</tr>'
        for label, one, two, delta in rows
    )
    return (
        '<div class="scroll"><table id="headline"><thead><tr><th class="name"></th><th>A</th><th>B</th>'
        f"<th>change</th></tr></thead><tbody>{body}</tbody></table></div>"
    )


def _steps_table(comparison: dict[str, Any]) -> str:
    groups = "".join(f'<th class="group" colspan="3">{escape(label)}</th>' for _, label, _ in STEP_FIGURES)
    sub = "<th>A</th><th>B</th><th>change</th>" * len(STEP_FIGURES)
    rows = []
    for step in comparison["steps"]:
        cells = []
        for key, _, _ in STEP_FIGURES:
            figure = step["figures"][key]
            share = key in SHARES
            cells.append(f"<td>{number(figure['a'], share)}</td><td>{number(figure['b'], share)}</td>")
            cells.append(_change(figure, share))
        held = step["slo_held"]
        verdicts = " / ".join("&ndash;" if v is None else ("held" if v else "broke") for v in (held["a"], held["b"]))
        rows.append(f'<tr><td class="name">{step["devices"]:,}</td><td>{verdicts}</td>{"".join(cells)}</tr>')
    return (
        '<div class="scroll"><table id="steps"><thead><tr><th class="name" rowspan="2">devices</th>'
        f'<th rowspan="2">SLO A / B</th>{groups}</tr><tr>{sub}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></div>"
    )


def render_comparison(comparison: dict[str, Any], charts: list[Chart]) -> str:
    a, b = comparison["a"], comparison["b"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fleetbed comparison</title><style>{STYLE}{COMPARE_STYLE}</style></head>
<body>
<h1>fleetbed: run A against run B</h1>
<p>A: <code>{escape(a["directory"])}</code><br>B: <code>{escape(b["directory"])}</code></p>
{_headline_table(comparison)}
<p><b>A:</b> {escape(a["bottleneck_sentence"])} <i>{escape(a["confidence"])}</i></p>
<p><b>B:</b> {escape(b["bottleneck_sentence"])} <i>{escape(b["confidence"])}</i></p>
<h2>Steps, fleet by fleet</h2>
<p class="note">The first step at each fleet size of each run; the change is B against A, green where B is
better, red where worse (within 2%: same).</p>
{_steps_table(comparison)}
<h2>Charts</h2><div class="charts">{"".join(svg(chart) for chart in charts)}</div>
</body></html>
"""


__all__ = ["render_comparison"]
