"""What the report plots: the charts of a run, built from its records and its summary (the third stage of the
pipeline: records -> summary -> these charts -> HTML).

Every chart carries the knee and the capacity: as marks at the start of their steps on time axes, at their fleet
sizes on device axes; time charts shade each judged step (green held, red broke) and the warm-up (grey). The
response-time distribution covers the whole run, so it carries the SLO limits instead (it has no time or fleet
axis to mark).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.experiment.plots import COLOURS, Band, Chart, Limit, Mark, Series, spans_decades
from app.experiment.records import EntryHistory, RunRecords
from app.slo import parse_slo

MIB = 1024 * 1024
_LATENCY = ("p50", "p95", "p99")


def _started(records: RunRecords) -> float:
    return float(records.plan.get("started_at") or records.aggregated.timestamp[0])


def _steps_by_fleet(summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    first: dict[int, dict[str, Any]] = {}
    for step in summary["steps"]:
        first.setdefault(int(step["devices"]), step)
    return dict(sorted(first.items()))


def _time_marks(summary: dict[str, Any], started: float) -> list[Mark]:
    """The knee and the capacity at the start of the first step at their fleet size."""
    by_fleet = _steps_by_fleet(summary)
    marks = []
    for key, label in (("knee_devices", "knee"), ("capacity_devices", "capacity")):
        devices = summary.get(key)
        if devices is not None and devices in by_fleet:
            marks.append(Mark(by_fleet[devices]["start"] - started, f"{label} {devices:,}"))
    return marks


def _fleet_marks(summary: dict[str, Any]) -> list[Mark]:
    return [
        Mark(float(summary[key]), f"{label} {summary[key]:,}")
        for key, label in (("knee_devices", "knee"), ("capacity_devices", "capacity"))
        if summary.get(key) is not None
    ]


def _bands(summary: dict[str, Any], started: float) -> list[Band]:
    """Each step: its warm-up in grey (labelled on the first), its judged part in green or red with its fleet."""
    bands = []
    for index, step in enumerate(summary["steps"]):
        judged_from = step.get("judged_from")
        judged_from = step["start"] if judged_from is None else judged_from
        if judged_from > step["start"]:
            bands.append(Band(step["start"] - started, judged_from - started, "warm-up" if index == 0 else "",
                              "warm-up"))  # fmt: skip
        kind = "held" if step["slo_passed"] else "broke"
        bands.append(Band(judged_from - started, step["end"] - started, f"{step['devices']:,}", kind))
    return bands


def _limits(slo: str, metrics: Sequence[str], name: str | None = None) -> list[Limit]:
    return [
        Limit(one.limit, f"SLO {one.label} {one.limit:,g} ms")
        for one in parse_slo(slo)
        if one.metric in metrics and one.name in (None, name)
    ]


def _rates(times: np.ndarray, counts: np.ndarray) -> tuple[list[float], list[float]]:
    if times.size < 2:
        return [], []
    rates = np.diff(counts) / np.maximum(1e-9, np.diff(times))
    return list(times[1:]), list(rates)


def _per_call_ms(resources: dict[str, np.ndarray], total: str, count: str) -> list[float]:
    seconds, calls = np.diff(resources[total]), np.diff(resources[count])
    with np.errstate(divide="ignore", invalid="ignore"):
        return list(np.where(calls > 0, 1000.0 * seconds / np.maximum(calls, 1e-9), np.nan))


def _has_data(series: Sequence[Series]) -> bool:
    return any(math.isfinite(x) and math.isfinite(y) for one in series for x, y in zip(one.xs, one.ys, strict=True))


def _latency_series(entry: EntryHistory, started: float) -> list[Series]:
    times = list(entry.timestamp - started)
    # Locust writes 0 for a window without requests: no figure, not a 0 ms answer.
    return [Series(key, times, [v if v > 0 else math.nan for v in entry.percentiles[key]]) for key in _LATENCY]


def build_charts(records: RunRecords, summary: dict[str, Any]) -> list[Chart]:
    started = _started(records)
    slo = summary["slo"]
    marks, bands = _time_marks(summary, started), _bands(summary, started)
    per_user = int(records.plan.get("devices_per_user", 1) or 1)
    aggregated = records.aggregated
    charts: list[Chart] = []

    def over_time(key: str, title: str, y_label: str, series: list[Series], **options: Any) -> None:
        if _has_data(series):
            charts.append(Chart(key, title, "elapsed", "elapsed (mm:ss)", y_label, series, marks, bands, **options))

    over_time("devices", "Devices over time", "devices",
              [Series("devices", list(aggregated.timestamp - started), list(aggregated.users * per_user))])  # fmt: skip
    rate_series = [Series(f"{e.method} {e.name}", list(e.timestamp - started), list(e.rps)) for e in records.entries]
    for index, entry in enumerate(records.entries):  # failures of each endpoint that had any, dashed in its colour
        times, failed = _rates(entry.timestamp - started, entry.total_failures)
        if any(v > 0 for v in failed):
            rate_series.append(Series(f"{entry.method} {entry.name} failures/s", times, failed,
                                      colour=COLOURS[index % len(COLOURS)], dashed=True))  # fmt: skip
    over_time("request-rate", "Requests and failures per second, by endpoint", "requests/s", rate_series)
    for entry in records.entries:
        series = _latency_series(entry, started)
        ys = [y for one in series for y in one.ys]
        over_time(f"latency-{entry.name.strip('/').replace('/', '-') or 'root'}",
                  f"Response time of {entry.method} {entry.name} (10 s windows)", "ms", series,
                  limits=_limits(slo, _LATENCY, entry.name), y_log=spans_decades(ys))  # fmt: skip
    fleet = records.fleet
    if fleet and "Timestamp" in fleet:
        fleet_times = list(fleet["Timestamp"] - started)
        series = [Series(f"lag {q}", fleet_times, [v if v > 0 else math.nan for v in fleet[f"Lag {q} ms"]])
                  for q in _LATENCY if f"Lag {q} ms" in fleet]  # fmt: skip
        ys = [y for one in series for y in one.ys]
        over_time("schedule-lag", "Schedule lag over the last 10 s: how late devices sent against their plan", "ms",
                  series, limits=_limits(slo, ("lag_p50", "lag_p95", "lag_p99")), y_log=spans_decades(ys))  # fmt: skip
        if "Slots given up" in fleet and np.nanmax(fleet["Slots given up"], initial=0) > 0:
            over_time("given-up", "Slots given up per second (devices more than an interval behind)", "slots/s",
                      [Series("given up", *_rates(fleet["Timestamp"] - started, fleet["Slots given up"]),
                              colour="#d62728")])  # fmt: skip

    by_fleet = _steps_by_fleet(summary)
    fleets = [float(d) for d in by_fleet]
    fleet_log = spans_decades(fleets)
    fleet_marks = _fleet_marks(summary)
    throughput = [Series("requests/s", fleets, [s["throughput_rps"] or math.nan for s in by_fleet.values()])]
    # Against devices only with two fleet sizes or more: one dot is not a curve (a constant run has one).
    if len(fleets) >= 2 and _has_data(throughput):
        charts.append(Chart("throughput-devices", "Throughput against devices (one point per fleet size)",
                            "number", "devices", "requests/s", throughput, fleet_marks, x_log=fleet_log,
                            points=True))  # fmt: skip
    latency = [
        Series(label, fleets, [s[field] if s[field] is not None else math.nan for s in by_fleet.values()])
        for label, field in (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"), ("lag p99", "lag_p99_ms"))
    ]
    if len(fleets) >= 2 and _has_data(latency):
        ys = [y for one in latency for y in one.ys]
        charts.append(Chart("latency-devices", "Latency against devices (one point per fleet size)", "number",
                            "devices", "ms", latency, fleet_marks, limits=_limits(slo, ("p95", "p99", "lag_p99")),
                            x_log=fleet_log, y_log=spans_decades(ys), points=True))  # fmt: skip
    distribution = [
        Series(name, [p for p, _ in points], [v for _, v in points]) for name, points in summary["distribution"].items()
    ]
    if _has_data(distribution):
        ys = [y for one in distribution for y in one.ys]
        charts.append(Chart("distribution", "Response-time distribution, whole run (percentile of requests)",
                            "percentile", "percentile of requests", "ms", distribution,
                            limits=_limits(slo, _LATENCY), y_log=spans_decades(ys), points=True,
                            note="The whole run, every step and the warm-up together: no knee or capacity on "
                            "this axis; the dashed lines are the SLO limits."))  # fmt: skip

    resources = records.resources
    if resources and resources["timestamp"].size >= 2:
        at = resources["timestamp"] - started
        times = list(at)
        cpu = [Series(f"{who} CPU", *_rates(at, resources[f"{who}_cpu_seconds"])) for who in ("service", "generator")]
        over_time("cpu", "CPU over time (1.0 = one core)", "cores", cpu)
        over_time("memory", "Service memory over time", "MiB",
                  [Series("service RSS", times, list(resources["service_rss_bytes"] / MIB))])  # fmt: skip
        over_time("pool", "Database pool over time", "connections",
                  [Series("in use", times, list(resources["pool_in_use"])),
                   Series("requests waiting", times, list(resources["pool_waiting"]), colour="#d62728"),
                   Series("pool size", times, list(resources["pool_max"]), colour="#7f7f7f",
                          dashed=True)])  # fmt: skip
        timing = [
            Series("commit per batch", times[1:], _per_call_ms(resources, "commit_seconds_sum", "commit_count")),
            Series("pool acquire", times[1:],
                   _per_call_ms(resources, "pool_acquire_seconds_sum", "pool_acquire_count")),
            Series("event-loop lag", times[1:],
                   _per_call_ms(resources, "loop_lag_seconds_sum", "loop_lag_count")),
            Series("request at the service", times[1:],
                   _per_call_ms(resources, "request_seconds_sum", "request_count")),
        ]  # fmt: skip
        ys = [y for one in timing for y in one.ys]
        over_time("service-timing", "Inside the service over time (mean per call, 1 s)", "ms", timing,
                  y_log=spans_decades(ys))  # fmt: skip
    charts_of_hosts(records, started, over_time)
    host = [
        Series(label, list(at - started), list(values * scale))
        for query, label, scale in (("host_iowait", "host IO wait (%)", 100.0),
                                    ("postgres_commits_rate", "database commits/s", 1.0))
        if query in records.prometheus
        for at, values in [records.prometheus[query]]
    ]  # fmt: skip
    for one in host:
        over_time(f"host-{one.label.split()[0]}", f"{one.label} (Prometheus)", one.label, [one])
    return charts


# (chart key, title, y label, quantities of `hosts.csv` drawn, one series per host and quantity)
HOST_CHARTS = (
    ("hosts-cpu", "Machines: cores busy, in I/O wait, and PostgreSQL's", "cores",
     ("cpu_busy_cores", "cpu_iowait_cores", "postgres_cpu_cores")),
    ("hosts-db-waits", "Database backends by what they wait on", "backends",
     ("db_backends_cpu", "db_backends_lock", "db_backends_io_wal", "db_backends_io_data", "db_backends_lwlock",
      "db_backends_client")),
    ("hosts-db-commits", "Database commits per second", "commits/s", ("db_commits_per_s",)),
)  # fmt: skip


def charts_of_hosts(records: RunRecords, started: float, over_time: Any) -> None:
    """The machines and the database (`hosts.csv`), when they were measured."""
    hosts = records.hosts
    if hosts is None:
        return
    for key, title, y_label, quantities in HOST_CHARTS:
        series = [
            Series(f"{host} {quantity}" if len(hosts.series) > 1 else quantity, list(times - started), list(values))
            for host, by_quantity in sorted(hosts.series.items())
            for quantity in quantities
            if quantity in by_quantity
            for times, values in [by_quantity[quantity]]
        ]
        over_time(key, title, y_label, series)


__all__ = ["build_charts"]
