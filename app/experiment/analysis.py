"""Per-step figures of a run (numpy), the capacity (the largest fleet that met the SLO) and the knee.

A step is a stretch of constant user count lasting at least `MIN_STEP_S`; its first third is left out of the
latency figures (devices are still spreading over their interval). Latency percentiles come from Locust's
10-second windows (`--csv-full-history`): per request name, weighted by its rate, then the median over the step,
so they are close to but not exactly the percentiles of all the step's requests.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from app.experiment.records import EntryHistory, RunRecords

MIN_STEP_S = 4.0
KNEE_LATENCY_FACTOR = 2.0
KNEE_LATENCY_MARGIN_MS = 25.0
KNEE_EFFICIENCY = 0.85
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


def step_figures(records: RunRecords, slo: str) -> list[StepFigures]:
    per_user = int(records.plan.get("devices_per_user", 1) or 1)
    workers = int(records.plan.get("workers", 1) or 1)
    objectives = parse_slo(slo)
    resources = records.resources
    steps = []
    for users, start, end in step_windows(records):
        settled = start + (end - start) / 3
        requests = sum(_count_delta(e.total_requests, e.timestamp, start, end) for e in records.entries)
        failures = sum(_count_delta(e.total_failures, e.timestamp, start, end) for e in records.entries)
        broken = []
        for metric, name, limit in objectives:
            value = _slo_value(records, metric, name, settled, end)
            if math.isfinite(value) and value > limit:
                label = f"{metric}[{name}]" if name else metric
                broken.append(f"{label}={value:.3g} > {limit:g}")
        lag = math.nan if records.lag is None else _weighted_percentile([records.lag], "p99", settled, end)
        steps.append(
            StepFigures(
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
            )
        )
    return steps


def capacity(steps: list[StepFigures]) -> int | None:
    """The largest fleet whose step met the SLO."""
    passing = [step.devices for step in steps if step.slo_passed]
    return max(passing) if passing else None


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


__all__ = ["StepFigures", "as_json", "capacity", "knee", "parse_slo", "step_figures", "step_windows"]
