"""The summary of a run (`summary.json`): per-step figures, the verdict (capacity, knee, bottleneck, how sure),
warm-up, the per-endpoint statistics and the SLO checks. The second stage of the report's pipeline:
records -> (this) -> charts and rendering, which only draw what it says.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from app.experiment.analysis import (
    StepFigures,
    as_json,
    capacity,
    confidence,
    knee,
    step_figures,
    verdict,
    warmup_only,
)
from app.experiment.diagnosis import diagnose
from app.experiment.records import RunRecords

TABLE_PERCENTILES = (50.0, 75.0, 95.0, 99.0)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _warm_up(records: RunRecords, steps: list[StepFigures]) -> dict[str, Any] | None:
    """The first step's warm-up (logins, the spawn burst, each device's first slot): reported, never judged."""
    if not steps or not math.isfinite(steps[0].judged_from):
        return None
    first = steps[0]
    return {"start": first.start, "end": first.judged_from, "seconds": first.judged_from - first.start,
            "requests": first.warmup_requests, "failures": first.warmup_failures}  # fmt: skip


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
    slo = records.slo
    steps = step_figures(records)
    run_verdict = verdict(records)
    knee_step = knee(steps, slo)
    found = capacity(steps)
    diagnosis = diagnose(steps, knee_step, int(plan.get("workers", 1) or 1), records.hosts)
    sure = confidence(steps, found)
    searched = plan.get("search") is not None
    return {
        "plan": plan,
        "slo": slo,
        "slo_held": run_verdict.held,
        # The fleet's verdict (Locust's exit code with --slo): a ramp until failure or a capacity search passes
        # when it found a capacity.
        "passed": run_verdict.passed(searched or bool(plan.get("until_failure"))),
        "search": searched,
        "capacity_devices": found,
        "knee_devices": None if knee_step is None else knee_step.devices,
        "broken_devices": sure.broken_devices,
        "bottleneck": asdict(diagnosis),
        "confidence": asdict(sure),
        "steps": [as_json(step) for step in steps],
        "warm_up": _warm_up(records, steps),
        "warmup_only": warmup_only(records),
        "endpoints": endpoint_table(records),
        "distribution": distribution(records),
        "totals": {
            "requests": int(sum(step.requests for step in steps)),
            "failures": int(sum(step.failures for step in steps)),
        },
    }


__all__ = ["build_summary", "distribution", "endpoint_table"]
