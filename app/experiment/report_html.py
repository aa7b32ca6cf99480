"""The HTML of a run's report: one file with inline CSS and SVG, no script, no network, readable on a phone.

It draws what it is given (the summary and the charts) and decides nothing: the verdict, the figures and what
each chart shows come from `summary.py` and `report_charts.py`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape
from typing import Any

from app.experiment.plots import Chart, svg

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1280px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.verdict { font-size: 1.15em; padding: .8em 1em; border-left: 6px solid #d62728; background: #fbeaea; }
.verdict.ok { border-color: #2ca02c; background: #eaf7ea; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .5em .9em; flex: 1 1 auto; }
.card b { display: block; font-size: 1.35em; white-space: nowrap; } .card span { color: #666; font-size: .9em; }
.scroll { overflow-x: auto; } table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
td, th { border: 1px solid #ccc; padding: .25em .55em; white-space: nowrap; } td { text-align: right; }
td.name, th.name { text-align: left; } .fail { color: #c00; font-weight: bold; } .ok-text { color: #2a7d2a; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 540px), 1fr)); gap: 1.2em; }
figure.chart { margin: 0; } figcaption { font-weight: bold; margin-bottom: .3em; }
svg.plot { width: 100%; height: auto; display: block; }
@media (max-width: 600px) {  /* a phone: charts keep a readable size and scroll sideways inside their frame */
  .plot-frame { overflow-x: auto; } svg.plot { min-width: 460px; }
}
.legend { display: flex; flex-wrap: wrap; gap: .3em 1em; font-size: .85em; margin-top: .2em; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: .35em; vertical-align: -1px; }
.legend i.dash { height: 0; border-top: 2px dashed #d62728; vertical-align: 3px; }
.note { font-size: .85em; color: #555; margin: .2em 0; }
"""
STEP_COLUMNS = [
    ("devices", "devices"), ("role", "step"), ("throughput_rps", "req/s"), ("failure_ratio", "failures"),
    ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("lag_p99_ms", "lag p99 ms"),
    ("service_cpu_cores", "service CPU"), ("generator_cpu_cores", "generator CPU"),
    ("pool_utilisation", "pool in use"), ("pool_waiting", "pool waiting"), ("pool_acquire_ms", "acquire ms"),
    ("commit_ms", "commit ms"), ("gc_fraction", "GC share"), ("loop_lag_ms", "loop lag ms"),
]  # fmt: skip
ENDPOINT_COLUMNS = [
    ("requests", "count"), ("failures", "failures"), ("min_ms", "min ms"), ("p50_ms", "p50 ms"),
    ("p75_ms", "p75 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"), ("rps", "req/s"),
]  # fmt: skip
SHARES = ("failure_ratio", "pool_utilisation", "gc_fraction")


def number(value: Any, share: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(str(value))
    if share:
        return f"{100 * value:.1f}%" if value else "0%"
    if isinstance(value, int) or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th{' class=name' if i == 0 else ''}>{escape(h)}</th>" for i, h in enumerate(header))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _steps_table(steps: list[dict[str, Any]]) -> str:
    rows = []
    for step in steps:
        cells = "".join(f"<td>{number(step[key], key in SHARES)}</td>" for key, _ in STEP_COLUMNS)
        verdict = (
            '<span class="ok-text">held</span>'
            if step["slo_passed"]
            else f'<span class="fail">broke: {escape("; ".join(step["slo_failures"]))}</span>'
        )
        rows.append(f'<tr>{cells}<td class="name">{verdict}</td></tr>')
    return _table([label for _, label in STEP_COLUMNS] + ["SLO"], rows)


def _slo_table(steps: list[dict[str, Any]]) -> str:
    """One row per objective, one column per step: the measured value, red where it broke the limit."""
    if not steps or not steps[0]["slo_checks"]:
        return "<p>No objectives were judged.</p>"
    header = ["objective", "limit"] + [f"{s['devices']:,} ({s['role']})" for s in steps]
    rows = []
    for index, check in enumerate(steps[0]["slo_checks"]):
        cells = []
        for step in steps:
            one = step["slo_checks"][index]
            shown = number(one["value"]) if one["value"] is not None else "no data"
            cells.append(f'<td class="{"" if one["passed"] else "fail"}">{shown}</td>')
        rows.append(f'<tr><td class="name">{escape(check["objective"])}</td><td>{number(check["limit"])}</td>'
                    f"{''.join(cells)}</tr>")  # fmt: skip
    return _table(header, rows)


def _endpoint_table(endpoints: list[dict[str, Any]]) -> str:
    if not endpoints:
        return "<p>No per-endpoint statistics (locust_stats.csv) in this run directory.</p>"
    rows = [
        f'<tr><td class="name">{escape(row["name"])}</td>'
        + "".join(f'<td class="{"fail" if key == "failures" and row[key] else ""}">{number(row[key])}</td>'
                  for key, _ in ENDPOINT_COLUMNS)
        + "</tr>"
        for row in endpoints
    ]  # fmt: skip
    return _table(["endpoint"] + [label for _, label in ENDPOINT_COLUMNS], rows)


def _cards(summary: dict[str, Any]) -> str:
    capacity, knee = summary["capacity_devices"], summary["knee_devices"]
    plan = summary["plan"]
    cards = [
        ("capacity", "none found" if capacity is None else f"{capacity:,} devices"),
        ("knee", "not reached" if knee is None else f"{knee:,} devices"),
        ("bottleneck", summary["bottleneck"]["kind"]),
        ("steps judged", f"{len(summary['steps'])}"),
        ("requests judged", f"{summary['totals']['requests']:,}"),
        ("device cycle", f"{plan.get('interval_s', 30):g} s"),
        ("service workers", f"{plan.get('workers', 1)}"),
    ]
    shown = "".join(
        f'<div class="card" id="card-{escape(key.replace(" ", "-"))}"><span>{escape(key)}</span>'
        f"<b>{escape(value)}</b></div>"
        for key, value in cards
    )
    return f'<div class="cards">{shown}</div>'


def render(summary: dict[str, Any], charts: list[Chart]) -> str:
    plan = summary["plan"]
    diagnosis = summary["bottleneck"]
    started = float(plan.get("started_at") or (summary["steps"][0]["start"] if summary["steps"] else 0.0))
    when = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    mode = "capacity search" if summary.get("search") else "until failure" if plan.get("until_failure") else (
        "step ramp" if plan.get("step_devices") else "constant fleet")  # fmt: skip
    ok = summary["slo_held"] or ((summary.get("search") or plan.get("until_failure")) and summary["capacity_devices"])
    interrupted = "<p><b>Interrupted before the end.</b></p>" if plan.get("interrupted") else ""
    evidence = "".join(f"<li>{escape(line)}</li>" for line in diagnosis["evidence"])
    warm_up = summary.get("warm_up")
    warm_text = (
        f"Warm-up (logins and the spawn burst, before the first judged step, never judged): "
        f"{warm_up['seconds']:.0f} s, {warm_up['requests']:,} requests, {warm_up['failures']:,} failures."
        if warm_up
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fleetbed experiment {escape(when)}</title><style>{STYLE}</style></head>
<body>
<h1>fleetbed experiment, {escape(when)}</h1>
<p>{escape(mode)}; SLO <code>{escape(summary["slo"])}</code>.</p>
<p class="verdict{" ok" if ok else ""}" id="bottleneck">{escape(diagnosis["sentence"])}</p>
{_cards(summary)}
<p id="confidence"><b>How sure:</b> {escape(summary["confidence"]["sentence"])}</p>
{interrupted}
<p class="note">Capacity: the largest fleet that held the SLO below the smallest that broke it. Knee: the first
fleet where latency used up a quarter of an objective's limit above the first step, or throughput stopped
following the fleet. {escape(warm_text)}</p>
<h2>Evidence</h2><ul>{evidence}</ul>
<h2>SLO checks, step by step</h2>{_slo_table(summary["steps"])}
<h2>Steps</h2>{_steps_table(summary["steps"])}
<h2>Requests by endpoint (whole run)</h2>{_endpoint_table(summary["endpoints"])}
<h2>Charts</h2><div class="charts">{"".join(svg(chart) for chart in charts)}</div>
<p class="note">Percentiles over time are Locust's 10-second windows; per-step latency is their rate-weighted
median over the step; resources come from the service's <code>/metrics</code> sampled every second. Raw data:
the CSV files next to this report.</p>
</body></html>
"""


__all__ = ["render"]
