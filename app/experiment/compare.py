"""Two runs side by side (`fleetbed report --compare RUN_A RUN_B`): "did my change help?".

Each run goes through the same pipeline as its own report (records -> summary); the comparison pairs their
headline figures (capacity, knee, bottleneck) and their steps by fleet size, with the change from A to B and
whether it is better or worse; the charts overlay both runs against devices.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from app.experiment.plots import Chart, Mark, Series, spans_decades
from app.experiment.records import read_run
from app.experiment.summary import build_summary

# (figure, label, better when higher)
STEP_FIGURES = [
    ("throughput_rps", "req/s", True), ("failure_ratio", "failures", False), ("p50_ms", "p50 ms", False),
    ("p95_ms", "p95 ms", False), ("p99_ms", "p99 ms", False), ("lag_p99_ms", "lag p99 ms", False),
    ("service_cpu_cores", "service CPU", False), ("generator_cpu_cores", "generator CPU", False),
    ("commit_ms", "commit ms", False),
]  # fmt: skip
RUN_COLOURS = {"A": "#1f77b4", "B": "#ff7f0e"}


def change(before: float | None, after: float | None, higher_is_better: bool) -> dict[str, Any]:
    """The change from A to B: absolute, relative (None from zero), and its direction for the reader."""
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return {"absolute": None, "relative": None, "verdict": "n/a"}
    absolute = after - before
    relative = absolute / before if before else None
    if abs(absolute) < 1e-12 or (relative is not None and abs(relative) < 0.02):
        verdict = "same"
    else:
        verdict = "better" if (absolute > 0) == higher_is_better else "worse"
    return {"absolute": absolute, "relative": relative, "verdict": verdict}


def _first_per_fleet(summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    first: dict[int, dict[str, Any]] = {}
    for step in summary["steps"]:
        first.setdefault(int(step["devices"]), step)
    return first


def _headline(directory: Path, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "directory": str(directory),
        "started_at": summary["plan"].get("started_at"),
        "slo": summary["slo"],
        "capacity_devices": summary["capacity_devices"],
        "knee_devices": summary["knee_devices"],
        "bottleneck": summary["bottleneck"]["kind"],
        "bottleneck_sentence": summary["bottleneck"]["sentence"],
        "confidence": summary["confidence"]["sentence"],
        "workers": summary["plan"].get("workers", 1),
        "interval_s": summary["plan"].get("interval_s"),
    }


def compare_summaries(a: dict[str, Any], b: dict[str, Any], dir_a: Path, dir_b: Path) -> dict[str, Any]:
    steps_a, steps_b = _first_per_fleet(a), _first_per_fleet(b)
    steps = []
    for devices in sorted(set(steps_a) | set(steps_b)):
        one, two = steps_a.get(devices), steps_b.get(devices)
        figures = {}
        for key, _label, higher in STEP_FIGURES:
            before = None if one is None else one[key]
            after = None if two is None else two[key]
            figures[key] = {"a": before, "b": after, **change(before, after, higher)}
        held = {
            "a": None if one is None else one["slo_passed"],
            "b": None if two is None else two["slo_passed"],
        }
        steps.append({"devices": devices, "figures": figures, "slo_held": held})
    return {
        "a": _headline(dir_a, a),
        "b": _headline(dir_b, b),
        "capacity": change(a["capacity_devices"], b["capacity_devices"], True),
        "knee": change(a["knee_devices"], b["knee_devices"], True),
        "same_slo": a["slo"] == b["slo"],
        "steps": steps,
    }


def compare_charts(a: dict[str, Any], b: dict[str, Any]) -> list[Chart]:
    fleets = {"A": _first_per_fleet(a), "B": _first_per_fleet(b)}
    all_fleets = [float(d) for one in fleets.values() for d in one]
    marks = [
        Mark(float(summary[key]), f"{run} {label} {summary[key]:,}")
        for run, summary in (("A", a), ("B", b))
        for key, label in (("capacity_devices", "capacity"), ("knee_devices", "knee"))
        if summary[key] is not None
    ]

    def series(key: str, suffix: str = "") -> list[Series]:
        return [
            Series(f"{run}{suffix}", [float(d) for d in sorted(steps)],
                   [steps[d][key] if steps[d][key] is not None else math.nan for d in sorted(steps)],
                   colour=RUN_COLOURS[run])
            for run, steps in fleets.items()
        ]  # fmt: skip

    latency = series("p95_ms", " p95")
    latency_ys = [y for one in latency for y in one.ys]
    return [
        Chart("compare-throughput", "Throughput against devices, A and B", "number", "devices", "requests/s",
              series("throughput_rps"), marks, x_log=spans_decades(all_fleets), points=True),
        Chart("compare-latency", "p95 against devices, A and B", "number", "devices", "ms", latency, marks,
              x_log=spans_decades(all_fleets), y_log=spans_decades(latency_ys), points=True),
    ]  # fmt: skip


def compare_runs(dir_a: Path, dir_b: Path) -> tuple[dict[str, Any], list[Chart]]:
    a, b = build_summary(read_run(dir_a)), build_summary(read_run(dir_b))
    return compare_summaries(a, b, dir_a, dir_b), compare_charts(a, b)


__all__ = ["STEP_FIGURES", "change", "compare_charts", "compare_runs", "compare_summaries"]
