"""The fleet's windows (`locust_windows.json`) of a run, rebuilt from the Locust master's metrics in Prometheus.

A window is a stretch of constant users (`locust_users`); its warm-up is the devices' first interval after the
count settled, at most half the window (as the fleet cuts them); its judged figures are the differences of the
master's cumulative counters and histograms between the end of the warm-up and the end of the window. The JSON is
the fleet's own (`app.slo.Window.as_json`), so the one evaluator judges it. One difference, said here and in the
docs: Prometheus keeps latency and lag as histogram buckets, so a window's times are its buckets' upper bounds
(the +Inf bucket at `OVERFLOW_MS`), where the fleet's own file keeps every rounded time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from app.slo import warmup_end
from app.stack.prometheus_export import Series

WINDOWS_FILE = "locust_windows.json"
MIN_WINDOW_S = 4.0
OVERFLOW_MS = 60_000


def bucket_queries() -> dict[str, str]:
    """Cumulative counters and buckets as they are (no rate): differences are taken at the window's edges."""
    return {
        "requests": "sum by (method, name) (locust_requests_total)",
        "failures": "sum by (method, name) (locust_failures_total)",
        "buckets": "sum by (method, name, le) (locust_request_duration_seconds_bucket)",
        "lag_buckets": "sum by (le) (fleetbed_generator_schedule_lag_seconds_bucket)",
        "lag_count": "sum(fleetbed_generator_schedule_lag_seconds_count)",
        "missed": "sum(fleetbed_generator_missed_slots_total)",
    }


def _bound_ms(le: str) -> int:
    return OVERFLOW_MS if le == "+Inf" else round(float(le) * 1000)


def _at(values: np.ndarray, index: int) -> float:
    """The counter at `index`, or the last value before it (a missed scrape), 0 before the first."""
    finite = np.flatnonzero(np.isfinite(values[: index + 1]))
    return float(values[finite[-1]]) if finite.size else 0.0


def _histogram(cumulative: dict[str, np.ndarray], first: int, last: int) -> dict[str, int]:
    """Counts by bucket bound (ms) between two grid indices, from cumulative `le` buckets."""
    ordered = sorted(cumulative.items(), key=lambda item: _bound_ms(item[0]))
    counts: dict[str, int] = {}
    below = 0.0
    for le, values in ordered:
        gained = max(0.0, _at(values, last) - _at(values, first))
        if gained - below >= 0.5:
            counts[str(_bound_ms(le))] = round(gained - below)
        below = max(below, gained)
    return counts


def _figures(grouped: dict[str, dict[Any, np.ndarray]], first: int, last: int) -> dict[str, Any]:
    requests = []
    for key, counts in sorted(grouped.get("requests", {}).items()):
        method, name = key
        made = round(_at(counts, last) - _at(counts, first))
        if made <= 0:
            continue
        failures = grouped.get("failures", {}).get(key, np.zeros(counts.size))
        buckets = {le: values for (m, n, le), values in grouped.get("buckets", {}).items() if (m, n) == key}
        requests.append({
            "method": method, "name": name, "requests": made,
            "failures": max(0, round(_at(failures, last) - _at(failures, first))),
            "times": _histogram(buckets, first, last),
        })  # fmt: skip
    lag_buckets = {le: values for (le,), values in grouped.get("lag_buckets", {}).items()}
    lag_count = next(iter(grouped.get("lag_count", {}).values()), np.zeros(0))
    missed = next(iter(grouped.get("missed", {}).values()), np.zeros(0))
    slots = {
        "due": round(_at(lag_count, last) - _at(lag_count, first)) if lag_count.size else 0,
        "given_up": round(_at(missed, last) - _at(missed, first)) if missed.size else 0,
        "lag": _histogram(lag_buckets, first, last),
    }
    return {"requests": requests, "slots": slots}


def windows(
    found: list[Series], grid: np.ndarray, users: np.ndarray, devices_per_user: int, interval_s: float
) -> list[dict[str, Any]]:
    """Every stretch of constant users (at least MIN_WINDOW_S long) as the fleet's window JSON."""
    grouped: dict[str, dict[Any, np.ndarray]] = {}
    index = {round(float(t), 3): i for i, t in enumerate(grid)}
    for series in found:
        labels = series.labels
        key: Any = {
            "requests": (labels.get("method", ""), labels.get("name", "")),
            "failures": (labels.get("method", ""), labels.get("name", "")),
            "buckets": (labels.get("method", ""), labels.get("name", ""), labels.get("le", "")),
            "lag_buckets": (labels.get("le", ""),),
        }.get(series.query, ())
        values = np.full(grid.size, math.nan)
        for when, value in series.points:
            position = index.get(round(when, 3))
            if position is not None:
                values[position] = float(value)
        grouped.setdefault(series.query, {})[key] = values
    found_windows = []
    begin = 0
    for i in range(1, users.size + 1):
        if i < users.size and users[i] == users[begin]:
            continue
        last = i - 1
        start, end = float(grid[begin]), float(grid[last])
        if users[begin] > 0 and end - start >= MIN_WINDOW_S:
            # The count is settled from the window's first sample on: the warm-up is the fleet's own rule from there.
            judged_from = warmup_end(start, start, interval_s, end)
            cut = int(np.searchsorted(grid, judged_from))
            found_windows.append({
                "users": int(users[begin]), "devices": int(users[begin]) * devices_per_user,
                "start": start, "end": end, "judged_from": float(grid[cut]),
                "warmup": _figures(grouped, begin, cut), "judged": _figures(grouped, cut, last),
            })  # fmt: skip
        begin = i
    return found_windows


def write_windows(path: Path, found_windows: list[dict[str, Any]], slo: str | None) -> None:
    document: dict[str, Any] = {"windows": found_windows, "source": "prometheus"}
    if slo:
        document["slo"] = slo
    path.write_text(json.dumps(document, indent=1) + "\n")


__all__ = ["WINDOWS_FILE", "bucket_queries", "windows", "write_windows"]
