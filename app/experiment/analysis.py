"""Per-step figures of a run (numpy), the SLO verdict, the capacity, the knee and how sure the capacity is.

A step is one of the fleet's judged windows (`app.slo.Window`: a stretch of constant fleet, its warm-up left
out). Its request, latency, failure and schedule-lag figures are the window's exact figures, judged by the one
evaluator (`app.slo`) that also gave Locust's verdict and exit code for the same run; the resources are averaged
or differenced over the whole window from `resources.csv`. Windows that ended inside their warm-up are reported
(`warmup_only`) and never judged.

The capacity is the largest fleet that met the SLO below the smallest fleet that broke it (`app.slo.capacity_of`;
a confirmation step that broke lowers it). The knee is the first fleet where a latency objective lost a part of its
headroom that matters (`KNEE_SLO_SHARE` of its limit, not a few milliseconds of noise), or throughput stopped
following the fleet. A capacity search's steps carry their role (search, refine, confirm) from the plan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from app.experiment.records import RunRecords
from app.slo import RunVerdict, Window, capacity_of, judge, parse_slo

KNEE_SLO_SHARE = 0.25  # a rise above the first step of a quarter of an objective's limit is a knee
KNEE_LATENCY_FACTOR = 2.0  # without a latency objective: p95 doubling ...
KNEE_LATENCY_MARGIN_MS = 25.0  # ... and by more than this
KNEE_EFFICIENCY = 0.85
ROLE_MATCH_S = 3.0  # a window opens within this of the search setting its target (the fleet's next tick)
# Latency objectives the knee can read from a step's figures.
_KNEE_FIELDS = {"p50": "p50_ms", "p95": "p95_ms", "p99": "p99_ms", "lag_p95": "lag_p95_ms", "lag_p99": "lag_p99_ms"}


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
    role: str = "step"  # step (a ramp's or a constant fleet's), or the capacity search's search, refine, confirm


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
    steps = [
        _step(one.window, list(one.checks), records, workers)
        for one in verdict(records).windows
        if one.checks is not None
    ]
    return [replace(step, role=_role(records, step)) for step in steps]


def _role(records: RunRecords, step: StepFigures) -> str:
    """The role of the search step whose target opened this window (the latest one at this fleet set before the
    window opened; the plan's `search_steps`), else a plain step."""
    roles = [
        (float(planned["target_set_at"]), str(planned["role"]))
        for planned in records.plan.get("search_steps") or []
        if int(planned["devices"]) == step.devices and float(planned["target_set_at"]) <= step.start + ROLE_MATCH_S
    ]
    return max(roles)[1] if roles else "step"


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
    """The largest fleet that met the SLO below the smallest that broke it (`app.slo.capacity_of`)."""
    return capacity_of((step.devices, step.slo_passed) for step in steps)


def _first_per_fleet(steps: list[StepFigures]) -> list[StepFigures]:
    """One step per fleet size (the first run at it; a confirmation repeats one), smallest fleet first."""
    first: dict[int, StepFigures] = {}
    for step in steps:
        first.setdefault(step.devices, step)
    return [first[devices] for devices in sorted(first)]


def knee(steps: list[StepFigures], slo: str = "") -> StepFigures | None:
    """The first fleet where latency rose by a share of its objective that matters, or throughput stopped
    following the fleet."""
    ordered = _first_per_fleet(steps)
    if len(ordered) < 2:
        return None
    base = ordered[0]
    # The rise that makes a knee, per latency figure: a share of its objective's limit.
    rises = {
        _KNEE_FIELDS[objective.metric]: KNEE_SLO_SHARE * objective.limit
        for objective in parse_slo(slo)
        if objective.name is None and objective.metric in _KNEE_FIELDS
    }
    if not rises:  # no latency objective: p95 doubling, by a margin
        base_p95 = base.p95_ms if math.isfinite(base.p95_ms) else 0.0
        rises = {"p95_ms": max((KNEE_LATENCY_FACTOR - 1) * base_p95, KNEE_LATENCY_MARGIN_MS)}
    base_per_device = base.throughput_rps / max(1, base.devices)
    for step in ordered[1:]:
        for name, rise in rises.items():
            now, before = getattr(step, name), getattr(base, name)
            if math.isfinite(now) and now - (before if math.isfinite(before) else 0.0) > rise:
                return step
        per_device = step.throughput_rps / max(1, step.devices)
        if base_per_device > 0 and per_device < KNEE_EFFICIENCY * base_per_device:
            return step
    return None


@dataclass(frozen=True)
class Confidence:
    """How sure the capacity is: the steps behind it, the gap to the first broken fleet, and the repeats."""

    steps_judged: int
    broken_devices: int | None  # the smallest fleet that broke the SLO
    gap: float | None  # (broken - capacity) / capacity: the search's resolution
    confirmed: bool | None  # a confirmation step at the capacity held (None: none ran)
    repeat_throughput_change: float | None  # confirmation against the first step at the same fleet
    repeat_p95_change_ms: float | None
    sentence: str


def confidence(steps: list[StepFigures], found: int | None) -> Confidence:
    broken = min((step.devices for step in steps if not step.slo_passed), default=None)
    gap = None if found is None or broken is None else (broken - found) / found
    at_capacity = [step for step in steps if step.devices == found]
    confirms = [step for step in at_capacity if step.role == "confirm"]
    confirmed = None if not confirms else all(step.slo_passed for step in confirms)
    throughput_change = p95_change = None
    if len(at_capacity) >= 2:
        first, last = at_capacity[0], at_capacity[-1]
        throughput_change = last.throughput_rps / first.throughput_rps - 1 if first.throughput_rps else None
        p95_change = last.p95_ms - first.p95_ms if math.isfinite(last.p95_ms - first.p95_ms) else None
    parts = [f"{len(steps)} step(s) judged"]
    if found is not None and broken is not None:
        parts.append(f"the limit lies between {found:,} devices (held) and {broken:,} (broke), a {gap:.0%} gap")
    elif found is not None:
        parts.append(f"nothing broke up to {found:,} devices: the capacity is at least that")
    if confirmed is not None:
        repeat = ""
        if throughput_change is not None:
            repeat = f"; the repeat's throughput differed by {throughput_change:+.0%}"
            if p95_change is not None:
                repeat += f" and its p95 by {p95_change:+.0f} ms"
        parts.append(f"a confirmation at {found:,} devices {'held' if confirmed else 'broke'} the SLO{repeat}")
    for step in steps:
        if step.role == "confirm" and not step.slo_passed:
            parts.append(f"a confirmation at {step.devices:,} devices broke the SLO, so the capacity is lower")
    return Confidence(len(steps), broken, gap, confirmed, throughput_change, p95_change, "; ".join(parts) + ".")


def as_json(step: StepFigures) -> dict[str, Any]:
    return {key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in asdict(step).items()}


__all__ = [
    "Confidence", "StepFigures", "as_json", "capacity", "confidence", "knee", "step_figures", "verdict",
    "warmup_only",
]  # fmt: skip
