"""The summary of a run (`summary.json`): per-step figures, the verdict (capacity, knee, bottleneck, how sure),
warm-up, the per-endpoint statistics and the SLO checks. The second stage of the report's pipeline:
records -> (this) -> charts and rendering, which only draw what it says.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from app.experiment.analysis import as_json, capacity, confidence, knee, step_figures
from app.experiment.diagnosis import diagnose
from app.experiment.records import RunRecords

DEFAULT_SLO = "p95=1000, p99=2500, failures=0.01, lag_p99=250"
TABLE_PERCENTILES = (50.0, 75.0, 95.0, 99.0)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _warm_up(records: RunRecords, first_start: float | None) -> dict[str, Any] | None:
    """What ran before the first judged window (logins, the spawn burst): reported, never judged."""
    aggregated = records.aggregated
    if first_start is None or aggregated.timestamp.size == 0:
        return None
    before = aggregated.timestamp <= first_start
    if not before.any():
        return None
    requests = sum(float(e.total_requests[e.timestamp <= first_start].max(initial=0)) for e in records.entries)
    failures = sum(float(e.total_failures[e.timestamp <= first_start].max(initial=0)) for e in records.entries)
    start = float(aggregated.timestamp[0])
    return {"start": start, "end": first_start, "seconds": first_start - start, "requests": int(requests),
            "failures": int(failures)}  # fmt: skip


def endpoint_table(records: RunRecords) -> list[dict[str, Any]]:
    """Per request name over the whole run, as Gatling's statistics table: count, failures, min, percentiles, max,
    requests per second; the total last."""
    rows = []
    for one in records.endpoints:
        row: dict[str, Any] = {"name": f"{one.method} {one.name}", "requests": one.requests,
                               "failures": one.failures, "min_ms": _finite(one.min_ms)}  # fmt: skip
        for percent in TABLE_PERCENTILES:
            row[f"p{percent:g}_ms"] = _finite(one.percentiles.get(percent, math.nan))
        row["max_ms"] = _finite(one.max_ms)
        row["rps"] = _finite(one.rps)
        rows.append(row)
    return rows


def distribution(records: RunRecords) -> dict[str, list[tuple[float, float]]]:
    """Per request name, (percentile, ms) over the whole run: the response-time distribution."""
    return {
        f"{one.method} {one.name}": [(p, v) for p, v in sorted(one.percentiles.items()) if math.isfinite(v)]
        for one in records.endpoints
    }


def build_summary(records: RunRecords) -> dict[str, Any]:
    plan = records.plan
    slo = str(plan.get("slo") or DEFAULT_SLO)
    steps = step_figures(records, slo)
    knee_step = knee(steps, slo)
    found = capacity(steps)
    diagnosis = diagnose(steps, knee_step, int(plan.get("workers", 1) or 1))
    sure = confidence(steps, found)
    searched = plan.get("search") is not None
    return {
        "plan": plan,
        "slo": slo,
        "slo_held": bool(steps) and all(step.slo_passed for step in steps),
        "search": searched,
        "capacity_devices": found,
        "knee_devices": None if knee_step is None else knee_step.devices,
        "broken_devices": sure.broken_devices,
        "bottleneck": asdict(diagnosis),
        "confidence": asdict(sure),
        "steps": [as_json(step) for step in steps],
        "warm_up": _warm_up(records, steps[0].start if steps else None),
        "endpoints": endpoint_table(records),
        "distribution": distribution(records),
        "totals": {
            "requests": int(sum(step.requests for step in steps)),
            "failures": int(sum(step.failures for step in steps)),
        },
    }


__all__ = ["DEFAULT_SLO", "build_summary", "distribution", "endpoint_table"]
