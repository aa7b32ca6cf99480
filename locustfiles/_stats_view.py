"""Reading Locust's (master-aggregated) request statistics and the fleet's own figures as plain data: the SLO's
`Figures`, and the per-request summary of run snapshots and records."""

from __future__ import annotations

from typing import Any

from _fleet_stats import FleetStats
from locust.stats import RequestStats

from app.slo import Figures, RequestFigures, percentile


def figures(stats: RequestStats, fleet: FleetStats) -> Figures:
    """Cumulative figures since the test started: every request entry, and the devices' slots."""
    requests = tuple(
        RequestFigures(
            entry.method or "", entry.name, entry.num_requests, entry.num_failures, dict(entry.response_times)
        )
        for entry in list(stats.entries.values())
    )
    return Figures(requests, fleet.slots())


def summarize(stats: RequestStats, fleet: FleetStats) -> dict[str, Any]:
    """Per request name: counts, rates and percentiles (ms); the devices' slots and backlog apart."""
    requests = {}
    for entry in list(stats.entries.values()):
        requests[f"{entry.method} {entry.name}"] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "rps": round(entry.total_rps, 3),
            "avg_ms": round(entry.avg_response_time, 3),
            "p50_ms": percentile(entry.response_times, 50),
            "p95_ms": percentile(entry.response_times, 95),
            "p99_ms": percentile(entry.response_times, 99),
            "max_ms": entry.max_response_time,
        }
    slots = fleet.slots()
    return {
        "requests": requests,
        "slots": {
            "due": slots.due,
            "given_up": slots.given_up,
            "lag_p50_ms": percentile(slots.lag, 50),
            "lag_p95_ms": percentile(slots.lag, 95),
            "lag_p99_ms": percentile(slots.lag, 99),
            "backlog_readings": fleet.backlog_total(),
        },
        "total_requests": stats.total.num_requests,
        "total_failures": stats.total.num_failures,
        "rps": round(stats.total.total_rps, 3),
    }
