"""Per-step figures of a run (numpy), and the verdict drawn from them: the capacity, the knee, how sure it is.

A step is a stretch of constant devices. The capacity search records its steps' judged windows in the plan (it
waits for the fleet to settle before each); for other runs a step is a stretch of constant users lasting at least
`MIN_STEP_S`, whose first third is left out of the latency figures (devices are still spreading over their
interval). Warm-up (logins, the spawn burst) lies outside every judged window: reported, never judged.
Latency percentiles come from Locust's 10-second windows (`--csv-full-history`): per request name, weighted by
its rate, then the median over the step, so they are close to but not exactly the percentiles of all the step's
requests.

Capacity is the largest fleet that met the SLO below the smallest fleet that broke it (a confirmation step that
broke lowers it). The knee is the first fleet where a latency objective lost a part of its headroom that matters
(`KNEE_SLO_SHARE` of its limit, not a few milliseconds of noise), or throughput stopped following the fleet.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app.experiment.records import EntryHistory, RunRecords

MIN_STEP_S = 4.0
KNEE_SLO_SHARE = 0.25  # a rise above the first step of a quarter of an objective's limit is a knee
KNEE_LATENCY_FACTOR = 2.0  # without a latency objective: p95 doubling ...
KNEE_LATENCY_MARGIN_MS = 25.0  # ... and by more than this
KNEE_EFFICIENCY = 0.85
# Latency objectives the knee can read from a step's figures.
_KNEE_FIELDS = {"p50": "p50_ms", "p95": "p95_ms", "p99": "p99_ms", "lag_p99": "lag_p99_ms"}
_SLO_ITEM = re.compile(
    r"^(?P<metric>lag_p\d+(?:\.\d+)?|p\d+(?:\.\d+)?|failures)(?:\[(?P<name>[^\]]+)\])?=(?P<limit>.+)$"
)
_SLO_TOKEN = re.compile(r"[^,\s\[]+(?:\[[^\]]*\])?[^,\s]*")


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
    role: str = "step"  # step (a ramp's), search, refine (the capacity search's) or confirm
    slo_checks: list[dict[str, Any]] = field(default_factory=list)  # objective, value, limit, passed


def _window(entry: EntryHistory, start: float, end: float) -> np.ndarray:
    return np.asarray((entry.timestamp >= start) & (entry.timestamp <= end))


def _count_delta(values: np.ndarray, timestamps: np.ndarray, start: float, end: float) -> float:
    before = values[timestamps < start]
    inside = values[(timestamps >= start) & (timestamps <= end)]
    if inside.size == 0:
        return 0.0
    base = before[-1] if before.size else 0.0
    return float(np.nanmax(inside) - (0.0 if math.isnan(base) else base))


def _weighted_percentile(entries: list[EntryHistory], key: str, start: float, end: float) -> float:
    """Median over the step of the rate-weighted mean of each entry's windowed percentile."""
    by_time: dict[float, list[tuple[float, float]]] = {}
    for entry in entries:
        mask = _window(entry, start, end)
        for when, rate, value in zip(entry.timestamp[mask], entry.rps[mask], entry.percentiles[key][mask], strict=True):
            if math.isfinite(value) and rate > 0:
                by_time.setdefault(float(when), []).append((float(rate), float(value)))
    if not by_time:
        return math.nan
    per_second = [sum(r * v for r, v in pairs) / sum(r for r, _ in pairs) for pairs in by_time.values()]
    return float(np.median(per_second))


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


def parse_slo(text: str) -> list[tuple[str, str | None, float]]:
    """The fleet's `--slo` syntax (`p95=500, p99[/measurement]=1000, failures=0.01, lag_p99=250`)."""
    objectives = []
    for item in _SLO_TOKEN.findall(text or ""):
        match = _SLO_ITEM.match(item)
        if match is None:
            raise ValueError(f"--slo item {item!r}: expected METRIC[NAME]=LIMIT such as p95=500 or failures=0.01")
        objectives.append((match["metric"], match["name"], float(match["limit"])))
    return objectives


def _slo_value(records: RunRecords, metric: str, name: str | None, start: float, end: float) -> float:
    entries = [e for e in records.entries if name is None or e.name == name]
    if metric == "failures":
        requests = sum(_count_delta(e.total_requests, e.timestamp, start, end) for e in entries)
        failures = sum(_count_delta(e.total_failures, e.timestamp, start, end) for e in entries)
        return failures / requests if requests else math.nan
    if metric.startswith("lag_"):
        if records.lag is None:
            return math.nan
        return _weighted_percentile([records.lag], _percentile_key(metric[4:]), start, end)
    return _weighted_percentile(entries, _percentile_key(metric), start, end)


def _percentile_key(metric: str) -> str:
    # The history keeps p50, p95 and p99; other percentiles are judged on the nearest kept one above.
    level = float(metric[1:])
    return "p50" if level <= 50 else "p95" if level <= 95 else "p99"


def step_windows(records: RunRecords) -> list[tuple[int, float, float]]:
    """(users, start, end) of each stretch of constant users lasting at least MIN_STEP_S."""
    aggregated = records.aggregated
    windows: list[tuple[int, float, float]] = []
    users, times = aggregated.users, aggregated.timestamp
    begin = 0
    for index in range(1, len(users) + 1):
        if index == len(users) or users[index] != users[begin]:
            if users[begin] > 0 and times[index - 1] - times[begin] >= MIN_STEP_S:
                windows.append((int(users[begin]), float(times[begin]), float(times[index - 1])))
            begin = index
    return windows


def judged_windows(records: RunRecords) -> list[tuple[int, float, float, float, str]]:
    """(users, start, end, judged from, role) of each step: the search's recorded windows, else detected ones."""
    recorded = records.plan.get("steps")
    if recorded:
        return [
            (int(one["users"]), float(one["start"]), float(one["end"]), float(one["start"]), str(one["role"]))
            for one in recorded
        ]
    return [(users, start, end, start + (end - start) / 3, "step") for users, start, end in step_windows(records)]


def step_figures(records: RunRecords, slo: str) -> list[StepFigures]:
    objectives = parse_slo(slo)
    return [
        figures(records, objectives, users, start, end, judged_from, role)
        for users, start, end, judged_from, role in judged_windows(records)
    ]


def figures(
    records: RunRecords,
    objectives: list[tuple[str, str | None, float]],
    users: int,
    start: float,
    end: float,
    settled: float,
    role: str = "step",
) -> StepFigures:
    """One step's figures: counts over [start, end], latency and the SLO over [settled, end]."""
    per_user = int(records.plan.get("devices_per_user", 1) or 1)
    workers = int(records.plan.get("workers", 1) or 1)
    resources = records.resources
    requests = sum(_count_delta(e.total_requests, e.timestamp, start, end) for e in records.entries)
    failures = sum(_count_delta(e.total_failures, e.timestamp, start, end) for e in records.entries)
    broken, checks = [], []
    for metric, name, limit in objectives:
        value = _slo_value(records, metric, name, settled, end)
        label = f"{metric}[{name}]" if name else metric
        passed = not (math.isfinite(value) and value > limit)
        checks.append({"objective": label, "value": value if math.isfinite(value) else None, "limit": limit,
                       "passed": passed})  # fmt: skip
        if not passed:
            broken.append(f"{label}={value:.3g} > {limit:g}")
    lag = math.nan if records.lag is None else _weighted_percentile([records.lag], "p99", settled, end)
    return StepFigures(
        devices=users * per_user,
        users=users,
        start=start,
        end=end,
        requests=int(requests),
        failures=int(failures),
        throughput_rps=requests / max(1.0, end - start),
        failure_ratio=failures / requests if requests else 0.0,
        p50_ms=_weighted_percentile(records.entries, "p50", settled, end),
        p95_ms=_weighted_percentile(records.entries, "p95", settled, end),
        p99_ms=_weighted_percentile(records.entries, "p99", settled, end),
        lag_p99_ms=lag,
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
        slo_failures=broken,
        role=role,
        slo_checks=checks,
    )


def capacity(steps: list[StepFigures]) -> int | None:
    """The largest fleet that met the SLO below the smallest fleet that broke it (in any of its steps)."""
    broken = min((step.devices for step in steps if not step.slo_passed), default=math.inf)
    passing = [step.devices for step in steps if step.slo_passed and step.devices < broken]
    return max(passing) if passing else None


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
        _KNEE_FIELDS[metric]: KNEE_SLO_SHARE * limit
        for metric, name, limit in parse_slo(slo)
        if name is None and metric in _KNEE_FIELDS
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
    "Confidence", "StepFigures", "as_json", "capacity", "confidence", "figures", "judged_windows", "knee",
    "parse_slo", "step_figures", "step_windows",
]  # fmt: skip
