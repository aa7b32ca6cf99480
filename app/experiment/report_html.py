"""`summary.json` and `report.html` of a run directory: the verdict at the top, then steps, plots and evidence.

The HTML is one file with inline CSS and SVG: no script, no network, opens the same anywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from app.experiment.analysis import StepFigures, as_json, capacity, knee, step_figures, verdict, warmup_only
from app.experiment.diagnosis import Diagnosis, diagnose
from app.experiment.plots import Series, line_chart
from app.experiment.records import RunRecords, read_run

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1340px; color: #222; }
.verdict { font-size: 1.25em; padding: .8em 1em; border-left: 6px solid #d62728; background: #fbeaea; }
.verdict.ok { border-color: #2ca02c; background: #eaf7ea; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
td { text-align: right; } .fail { color: #d62728; font-weight: bold; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } .steps { overflow-x: auto; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "&ndash;" if not math.isfinite(value) else f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return escape(str(value))


def _over_time(records: RunRecords, column: str, start: float) -> Series | None:
    resources = records.resources
    if column not in resources or resources["timestamp"].size < 2:
        return None
    times, values = resources["timestamp"], resources[column]
    rates = np.diff(values) / np.maximum(1e-9, np.diff(times))
    return Series(column, list(times[1:] - start), list(rates))


def build_summary(records: RunRecords) -> tuple[dict[str, Any], list[StepFigures], Diagnosis, StepFigures | None]:
    plan = records.plan
    slo = records.slo
    steps = step_figures(records)
    run_verdict = verdict(records)
    knee_step = knee(steps)
    diagnosis = diagnose(steps, knee_step, int(plan.get("workers", 1) or 1), records.hosts)
    found = capacity(steps)
    summary = {
        "plan": plan,
        "slo": slo,
        "slo_held": run_verdict.held,
        # The fleet's verdict (Locust's exit code with --slo): a ramp until failure passes when it found a capacity.
        "passed": run_verdict.passed(bool(plan.get("until_failure"))),
        "warmup_only": warmup_only(records),
        "capacity_devices": found,
        "knee_devices": None if knee_step is None else knee_step.devices,
        "bottleneck": asdict(diagnosis),
        "steps": [as_json(step) for step in steps],
        "totals": {
            "requests": int(sum(step.requests for step in steps)),
            "failures": int(sum(step.failures for step in steps)),
        },
    }
    return summary, steps, diagnosis, knee_step


def render(
    records: RunRecords, summary: dict[str, Any], steps: list[StepFigures], knee_step: StepFigures | None
) -> str:
    plan = records.plan
    diagnosis = summary["bottleneck"]
    started = float(plan.get("started_at") or records.aggregated.timestamp[0])
    devices = [float(step.devices) for step in steps]
    knee_devices = None if knee_step is None else float(knee_step.devices)
    knee_time = None if knee_step is None else knee_step.start - started
    plots = [
        line_chart("Throughput against devices", "devices", "requests/s",
                   [Series("throughput", devices, [s.throughput_rps for s in steps])], knee_devices),
        line_chart("Latency against devices", "devices", "ms",
                   [Series(label, devices, [getattr(s, f"{label}_ms") for s in steps])
                    for label in ("p50", "p95", "p99")]
                   + [Series("schedule lag p99", devices, [s.lag_p99_ms for s in steps])], knee_devices),
    ]  # fmt: skip
    cpu = [
        one
        for one in (_over_time(records, c, started) for c in ("service_cpu_seconds", "generator_cpu_seconds"))
        if one
    ]
    cpu = [Series(one.label.replace("_cpu_seconds", " CPU"), one.xs, one.ys) for one in cpu]
    plots.append(line_chart("CPU over time", "seconds since start", "cores", cpu, knee_time))
    resources = records.resources
    if "pool_waiting" in resources:
        times = list(resources["timestamp"] - started)
        waiting = Series("pool waiting", times, list(resources["pool_waiting"]))
        plots.append(
            line_chart("Pool waiters over time", "seconds since start", "acquires waiting", [waiting], knee_time)
        )
    aggregated = records.aggregated
    plots.append(
        line_chart("Devices over time", "seconds since start", "devices",
                   [Series("devices", list(aggregated.timestamp - started),
                           list(aggregated.users * int(plan.get("devices_per_user", 1) or 1)))], knee_time)
    )  # fmt: skip
    columns = ["devices", "throughput_rps", "failure_ratio", "p50_ms", "p95_ms", "p99_ms", "lag_p99_ms",
               "service_cpu_cores", "generator_cpu_cores", "pool_utilisation", "pool_waiting", "pool_acquire_ms",
               "commit_ms", "gc_fraction", "loop_lag_ms", "slo_passed"]  # fmt: skip
    rows = []
    for step in steps:
        cells = "".join(f"<td>{_cell(getattr(step, column))}</td>" for column in columns[:-1])
        verdict = (
            "met" if step.slo_passed else f'<span class="fail">broken: {escape("; ".join(step.slo_failures))}</span>'
        )
        rows.append(f"<tr>{cells}<td>{verdict}</td></tr>")
    capacity_text = f"{summary['capacity_devices']:,} devices" if summary["capacity_devices"] else "none found"
    knee_text = f"{summary['knee_devices']:,} devices" if summary["knee_devices"] else "not reached"
    when = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ok = summary["slo_held"] or (plan.get("until_failure") and summary["capacity_devices"])
    interrupted = "Interrupted before the end." if plan.get("interrupted") else ""
    evidence = "".join(f"<li>{escape(line)}</li>" for line in diagnosis["evidence"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fleetbed experiment {escape(when)}</title>
<style>{STYLE}</style></head>
<body>
<h1>fleetbed experiment, {escape(when)}</h1>
<p class="verdict{" ok" if ok else ""}" id="bottleneck">{escape(diagnosis["sentence"])}</p>
<p><b>Capacity</b> (largest fleet that met the SLO): {capacity_text}. <b>Knee</b>: {knee_text}.
<b>SLO</b>: <code>{escape(summary["slo"])}</code>, {"held" if summary["slo_held"] else "broken"}.
Service workers: {escape(str(plan.get("workers", 1)))}. {interrupted}</p>
<h2>Evidence</h2><ul>{evidence}</ul>
<h2>Plots</h2><div class="plots">{"".join(plots)}</div>
<h2>Steps</h2><div class="steps">
<table><thead><tr>{"".join(f"<th>{escape(c)}</th>" for c in columns)}</tr></thead><tbody>{"".join(rows)}</tbody></table>
</div>
<p>Latency percentiles come from Locust's 10-second windows, weighted by request rate; resources from the service's
<code>/metrics</code> sampled every second. Raw data: the CSV files next to this report.</p>
</body></html>
"""


def write_report(directory: Path, output: Path | None = None) -> dict[str, Any]:
    """Analyse `directory`, write `summary.json` into it and the HTML to `output` (default DIR/report.html)."""
    records = read_run(directory)
    summary, steps, _diagnosis, knee_step = build_summary(records)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (output or directory / "report.html").write_text(render(records, summary, steps, knee_step))
    return summary
