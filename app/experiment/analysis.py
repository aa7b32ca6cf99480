"""Per-step figures of a run (numpy), the SLO verdict, the capacity and the knee.

A step is one of the fleet's judged windows (`app.slo.Window`: a stretch of constant fleet, its warm-up left
out). Its request, latency, failure and schedule-lag figures are the window's exact figures, judged by the one
evaluator (`app.slo`) that also gave Locust's verdict and exit code for the same run; the resources are averaged
or differenced over the whole window from `resources.csv`. Windows that ended inside their warm-up are reported
(`warmup_only`) and never judged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app.experiment.records import RunRecords
from app.slo import RunVerdict, Window, capacity_of, judge

KNEE_LATENCY_FACTOR = 2.0
KNEE_LATENCY_MARGIN_MS = 25.0
KNEE_EFFICIENCY = 0.85


@dataclass(frozen=True)
class StepFigures:
    devices: int
    users: int
    start: float
    end: float
    requests: int
    failures: int
    throughput_rps: float
    failure_ratio: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    lag_p99_ms: float
    service_cpu_cores: float
    generator_cpu_cores: float
    pool_waiting: float
    pool_utilisation: float  # connections in use / pool size, averaged over the step
    pool_acquire_ms: float
    commit_ms: float
    gc_fraction: float
    loop_lag_ms: float
    server_ms: float
    slo_passed: bool
    slo_failures: list[str]
    slo_checks: list[dict[str, Any]] = field(default_factory=list)  # objective, value, limit, passed
    judged_from: float = math.nan  # the warm-up before it is reported, never judged
    lag_p95_ms: float = math.nan
    slots_due: int = 0
    slots_given_up: int = 0
    warmup_requests: int = 0
    warmup_failures: int = 0
    warmup_p95_ms: float = math.nan


def _rate(resources: dict[str, np.ndarray], column: str, start: float, end: float) -> float:
    if not resources or column not in resources:
        return math.nan
    times = resources["timestamp"]
    mask = (times >= start) & (times <= end) & np.isfinite(resources[column])
    if mask.sum() < 2:
        return math.nan
    values, at = resources[column][mask], times[mask]
    return float((values[-1] - values[0]) / max(1e-9, at[-1] - at[0]))


def _mean(resources: dict[str, np.ndarray], column: str, start: float, end: float) -> float:
    if not resources or column not in resources:
        return math.nan
    times = resources["timestamp"]
    values = resources[column][(times >= start) & (times <= end)]
    return float(np.nanmean(values)) if values.size else math.nan


def _ratio_ms(resources: dict[str, np.ndarray], total: str, count: str, start: float, end: float) -> float:
    seconds, calls = _rate(resources, total, start, end), _rate(resources, count, start, end)
    return 1000.0 * seconds / calls if calls and math.isfinite(calls) and calls > 0 else math.nan


def _finite(value: float | None) -> float:
    return math.nan if value is None else value


def verdict(records: RunRecords) -> RunVerdict:
    """The run's verdict: the fleet's windows judged on its SLO, exactly as Locust judged them for its exit code."""
    return judge(records.slo, records.windows)


def _step(window: Window, checks: list[Any], records: RunRecords, workers: int) -> StepFigures:
    start, end = window.start, window.end
    resources = records.resources
    judged = window.judged
    requests = judged.request_count() + window.warmup.request_count()
    failures = judged.failure_count() + window.warmup.failure_count()
    broken = [check for check in checks if not check.passed]
    return StepFigures(
        devices=window.devices,
        users=window.users,
        start=start,
        end=end,
        requests=requests,
        failures=failures,
        throughput_rps=judged.request_count() / max(1e-9, window.judged_seconds),
        failure_ratio=_finite(judged.failure_ratio()),
        p50_ms=_finite(judged.latency_ms(50)),
        p95_ms=_finite(judged.latency_ms(95)),
        p99_ms=_finite(judged.latency_ms(99)),
        lag_p99_ms=_finite(judged.lag_ms(99)),
        service_cpu_cores=_rate(resources, "service_cpu_seconds", start, end),
        generator_cpu_cores=_rate(resources, "generator_cpu_seconds", start, end),
        pool_waiting=_mean(resources, "pool_waiting", start, end),
        pool_utilisation=_mean(resources, "pool_in_use", start, end)
        / max(1.0, _mean(resources, "pool_max", start, end)),
        pool_acquire_ms=_ratio_ms(resources, "pool_acquire_seconds_sum", "pool_acquire_count", start, end),
        commit_ms=_ratio_ms(resources, "commit_seconds_sum", "commit_count", start, end),
        gc_fraction=_rate(resources, "gc_pause_seconds_sum", start, end) / workers,
        loop_lag_ms=_ratio_ms(resources, "loop_lag_seconds_sum", "loop_lag_count", start, end),
        server_ms=_ratio_ms(resources, "request_seconds_sum", "request_count", start, end),
        slo_passed=not broken,
        slo_failures=[check.text for check in broken],
        slo_checks=[check.as_json() for check in checks],
        judged_from=_finite(window.judged_from),
        lag_p95_ms=_finite(judged.lag_ms(95)),
        slots_due=judged.slots.due,
        slots_given_up=judged.slots.given_up,
        warmup_requests=window.warmup.request_count(),
        warmup_failures=window.warmup.failure_count(),
        warmup_p95_ms=_finite(window.warmup.latency_ms(95)),
    )


def step_figures(records: RunRecords) -> list[StepFigures]:
    """One StepFigures per judged window, in order (windows that were warm-up only are left out)."""
    workers = int(records.plan.get("workers", 1) or 1)
    return [
        _step(one.window, list(one.checks), records, workers)
        for one in verdict(records).windows
        if one.checks is not None
    ]


def warmup_only(records: RunRecords) -> list[dict[str, Any]]:
    """Windows that ended inside their warm-up: reported, never judged."""
    return [
        {
            "devices": window.devices,
            "seconds": window.end - window.start,
            "requests": window.warmup.request_count(),
            "failures": window.warmup.failure_count(),
        }
        for window in records.windows
        if not window.is_judged
    ]


def capacity(steps: list[StepFigures]) -> int | None:
    """The largest fleet judged before the first step that broke the SLO (`app.slo.capacity_of`)."""
    return capacity_of((step.devices, step.slo_passed) for step in steps)


def knee(steps: list[StepFigures]) -> StepFigures | None:
    """The first step where p95 departs from flat, or throughput stops following the fleet."""
    if len(steps) < 2:
        return None
    base = steps[0]
    base_p95 = np.nanmin([s.p95_ms for s in steps[:2]]) if any(math.isfinite(s.p95_ms) for s in steps[:2]) else 0.0
    base_per_device = base.throughput_rps / max(1, base.devices)
    for step in steps[1:]:
        latency_up = math.isfinite(step.p95_ms) and step.p95_ms > max(
            KNEE_LATENCY_FACTOR * base_p95, base_p95 + KNEE_LATENCY_MARGIN_MS
        )
        per_device = step.throughput_rps / max(1, step.devices)
        if latency_up or (base_per_device > 0 and per_device < KNEE_EFFICIENCY * base_per_device):
            return step
    return None


def as_json(step: StepFigures) -> dict[str, Any]:
    return {key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in asdict(step).items()}


__all__ = ["StepFigures", "as_json", "capacity", "knee", "step_figures", "verdict", "warmup_only"]
