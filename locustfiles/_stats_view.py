"""Reading Locust's (master-aggregated) request stats as plain data for the SLO checks, snapshots and summaries."""

from __future__ import annotations

from typing import Any

from _slo import LAG_REQUEST_TYPE, EntryStats, percentile
from locust.stats import RequestStats


def entries(stats: RequestStats) -> list[EntryStats]:
    return [
        EntryStats(entry.method or "", entry.name, entry.num_requests, entry.num_failures, dict(entry.response_times))
        for entry in list(stats.entries.values())
    ]


def summarize(stats: RequestStats) -> dict[str, Any]:
    """Per request name: counts, rates and percentiles (ms); schedule lag listed apart from requests."""
    requests = {}
    lag: dict[str, Any] = {}
    for entry in list(stats.entries.values()):
        numbers = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "rps": round(entry.total_rps, 3),
            "avg_ms": round(entry.avg_response_time, 3),
            "p50_ms": percentile(entry.response_times, 50),
            "p95_ms": percentile(entry.response_times, 95),
            "p99_ms": percentile(entry.response_times, 99),
            "max_ms": entry.max_response_time,
        }
        if entry.method == LAG_REQUEST_TYPE:
            lag = {"cycles": entry.num_requests, "missed": entry.num_failures, **numbers}
        else:
            requests[f"{entry.method} {entry.name}"] = numbers
    total = stats.total
    return {
        "requests": requests,
        "schedule_lag": lag,
        "total_requests": sum(item["requests"] for item in requests.values()),
        "total_failures": sum(item["failures"] for item in requests.values()),
        "aggregated_rps_incl_lag": round(total.total_rps, 3),
    }
