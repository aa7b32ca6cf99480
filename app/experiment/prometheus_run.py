"""A run directory rebuilt from Prometheus and the service's run record, for `fleetbed report --prometheus`.

Any run that Prometheus kept can be reported: one started from the Locust web UI of `fleetbed up`, of the compose
deployment or of the NixOps network, or a `fleetbed experiment --target`. What a local experiment writes is written
here from range queries, in the same files, so the same analysis reads it (`report_html.write_report`):

- `locust_stats_history.csv`: the Locust master's `:9646` metrics (users, requests and failures by request name,
  latency and schedule-lag percentiles over 10-second windows from its histograms);
- `resources.csv`: the service's own metrics (job `fleetbed`), the columns of `sampler.SERVICE_SAMPLES`, and the
  generator's CPU (job `locust`: the busiest Locust process, the master's own `process_cpu_seconds_total` or the
  busiest worker's as reported to the master);
- `hosts.csv`, `hosts.json`: the machines and PostgreSQL (`prometheus_evidence`);
- `locust_windows.json`: the fleet's windows of constant users with their warm-up and judged figures
  (`prometheus_windows`), for the SLO evaluator;
- `experiment.json`: the plan, from the run record's config (SLO, devices per user, shape) when there is one;
- `prometheus.csv`: the default export of `fleetbed export` over the run.

Steps are the stretches of constant users in the master's `locust_users`, so a ramp by hand in the web UI has steps
too. Prometheus answers at most 11,000 points per series; `export_series` splits longer ranges into chunks.
"""

from __future__ import annotations

import csv
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.experiment.hosts import write_evidence
from app.experiment.prometheus_evidence import host_evidence
from app.experiment.prometheus_windows import WINDOWS_FILE, bucket_queries, windows, write_windows
from app.experiment.records import AGGREGATED, HISTORY_FILE, LAG_TYPE, PLAN_FILE, RESOURCES_FILE
from app.experiment.sampler import COLUMNS, SERVICE_SAMPLES
from app.stack.prometheus_export import (
    DEFAULT_QUERIES,
    ExportError,
    Series,
    _get_json,
    check_url,
    export_series,
    write_tidy,
)

GENERATOR_CORES = "generator_cpu_cores"  # a gauge, integrated into resources.csv's generator_cpu_seconds
LATENCY_WINDOW = "10s"  # Locust's own percentile window (`--csv-full-history`), so both sources agree
RUN_TIMEOUT_S = 10.0
MIN_STEP_S = 1.0
DEFAULT_INTERVAL_S = 30.0  # the fleet's device cycle, for a run with no record of its own
HISTORY_COLUMNS = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "95%", "99%",
                   "Total Request Count", "Total Failure Count"]  # fmt: skip


class RunRecordError(ExportError):
    """The service did not give the run record (unreachable, no such run, wrong token); the message says which."""


@dataclass(frozen=True)
class RunWindow:
    start: float
    end: float
    plan: dict[str, Any]


def _service_json(service_url: str, path: str, token: str) -> Any:
    url = f"{service_url.rstrip('/')}{path}"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise RunRecordError(f"--service must be an http(s) URL like http://127.0.0.1:8080, got {service_url!r}")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 (checked)
    try:
        with urllib.request.urlopen(request, timeout=RUN_TIMEOUT_S) as response:  # noqa: S310 (an http URL)
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        hint = " (check the operator token)" if exc.code in (401, 403) else ""
        raise RunRecordError(f"{service_url}{path} answered {exc.code}{hint}: {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RunRecordError(f"cannot read {service_url}{path}: {getattr(exc, 'reason', exc)}") from exc


def _unix(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_window(service_url: str, token: str, run_id: str, now: float) -> RunWindow:
    """The run's time range and plan from its record; `latest` is the newest run."""
    if run_id == "latest":
        runs = _service_json(service_url, "/runs?limit=1", token)["runs"]
        if not runs:
            raise RunRecordError(f"{service_url} has no run record yet: start a run, or give --from and --to")
        run_id = runs[0]["id"]
    run = _service_json(service_url, f"/runs/{urllib.parse.quote(run_id)}", token)
    config = run.get("config") or {}
    end = _unix(run["finished_at"]) if run.get("finished_at") else now
    plan = {
        "source": "prometheus",
        "run_id": run["id"],
        "run_name": run["name"],
        "status": run["status"],
        "started_at": _unix(run["started_at"]),
        "ended_at": end,
        "devices_per_user": int(config.get("devices_per_user") or 1),
        "shape": config.get("shape"),
        "until_failure": config.get("shape") == "until-failure",
        "interval_s": config.get("device_interval"),
        "snapshots": len(run.get("snapshots", [])),
    }
    if config.get("slo"):
        plan["slo"] = config["slo"]
    return RunWindow(plan["started_at"], end, plan)


def scrape_interval_s(prometheus_url: str) -> float:
    """The global scrape interval of the Prometheus (its loaded configuration); 15 s, its default, if unsaid."""
    body = _get_json(f"{check_url(prometheus_url)}/api/v1/status/config")
    text = str(body.get("data", {}).get("yaml", ""))
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "scrape_interval":
            return _duration_s(value.strip())
    return 15.0


def _duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    return 15.0


def locust_queries() -> dict[str, str]:
    by = "sum by (method, name)"
    quantile = (
        "1000 * histogram_quantile({q}, sum by (method, name, le) "
        f"(rate(locust_request_duration_seconds_bucket[{LATENCY_WINDOW}])))"
    )
    lag = (
        "1000 * histogram_quantile({q}, sum by (le) "
        f"(rate(fleetbed_generator_schedule_lag_seconds_bucket[{LATENCY_WINDOW}])))"
    )
    return {
        "users": "sum(locust_users)",
        "devices": "sum(fleetbed_generator_devices)",
        "requests": f"{by} (locust_requests_total)",
        "failures": f"{by} (locust_failures_total)",
        "rps": f"{by} (rate(locust_requests_total[{LATENCY_WINDOW}]))",
        "fps": f"{by} (rate(locust_failures_total[{LATENCY_WINDOW}]))",
        **{f"p{level}": quantile.format(q=level / 100) for level in (50, 95, 99)},
        "lag_requests": "sum(fleetbed_generator_schedule_lag_seconds_count)",
        "lag_failures": "sum(fleetbed_generator_missed_slots_total)",
        "lag_rps": f"sum(rate(fleetbed_generator_schedule_lag_seconds_count[{LATENCY_WINDOW}]))",
        **{f"lag_p{level}": lag.format(q=level / 100) for level in (50, 95, 99)},
    }


def generator_cpu_query(window: str) -> str:
    """The busiest Locust process's cores: the master's (or the one local process's) own CPU, or the busiest worker's
    as the workers report it to the master. Locust runs each process on one core, so the busiest is the limit."""
    master = f'label_replace(rate(process_cpu_seconds_total{{job="locust"}}[{window}]), "process", "master", "", "")'
    worker = 'label_replace(fleetbed_generator_busiest_worker_cpu_cores{job="locust"}, "process", "worker", "", "")'
    return f"max({master} or {worker})"


def resource_queries(window: str) -> dict[str, str]:
    queries = {column: f'sum({sample}{{job="fleetbed"}})' for column, sample in SERVICE_SAMPLES.items()}
    queries[GENERATOR_CORES] = generator_cpu_query(window)
    queries["workers"] = 'count(count by (instance, worker) (process_cpu_seconds_total{job="fleetbed"}))'
    return queries


def _grid(start: float, end: float, step_s: float) -> np.ndarray:
    return np.round(np.arange(start, end + step_s / 2, step_s), 3)


def _on_grid(series: Series, grid: np.ndarray) -> np.ndarray:
    values = np.full(grid.size, math.nan)
    index = {float(t): i for i, t in enumerate(grid)}
    for when, value in series.points:
        position = index.get(round(when, 3))
        if position is not None:
            values[position] = float(value)
    return values


def _fmt(value: float) -> str:
    return "N/A" if not math.isfinite(value) else f"{value:.6g}"


def write_history(path: Path, found: list[Series], grid: np.ndarray) -> None:
    """Locust's stats-history CSV from the master's metrics: one row per request name, the lag and the aggregate."""
    by_query: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for series in found:
        key = (series.labels.get("method", ""), series.labels.get("name", ""))
        by_query.setdefault(series.query, {})[key] = _on_grid(series, grid)
    users = next(iter(by_query.get("users", {}).values()), np.zeros(grid.size))
    users = np.nan_to_num(users, nan=0.0)
    names = sorted(by_query.get("requests", {}))
    empty = np.full(grid.size, math.nan)

    def get(query: str, key: tuple[str, str]) -> np.ndarray:
        return by_query.get(query, {}).get(key, empty)

    def total(query: str) -> np.ndarray:
        stacked = [np.nan_to_num(get(query, key)) for key in names]
        return np.sum(stacked, axis=0) if stacked else np.zeros(grid.size)

    requests, failures = total("requests"), total("failures")
    weights = np.array([np.nan_to_num(get("rps", key)) for key in names]) if names else np.zeros((1, grid.size))
    # The aggregate's percentiles: each name's, weighted by its request rate (as `analysis` weighs them too).
    aggregate = {}
    for level in ("p50", "p95", "p99"):
        values = np.array([get(level, key) for key in names]) if names else np.full((1, grid.size), math.nan)
        usable = np.isfinite(values) & (weights > 0)
        weight = np.where(usable, weights, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            aggregate[level] = np.sum(np.where(usable, values, 0.0) * weight, axis=0) / np.sum(weight, axis=0)
    rps = np.sum(weights, axis=0)
    lag = ("", "")
    rows: list[list[str]] = []
    for i, when in enumerate(grid):
        if not np.isfinite(requests[i]) or (requests[i] == 0 and users[i] == 0):
            continue
        stamp, count = f"{when:.3f}", _fmt(users[i])
        for key in names:
            rows.append([stamp, count, key[0], key[1], _fmt(get("rps", key)[i]), _fmt(get("fps", key)[i]),
                         *(_fmt(get(p, key)[i]) for p in ("p50", "p95", "p99")),
                         _fmt(get("requests", key)[i]), _fmt(get("failures", key)[i])])  # fmt: skip
        if math.isfinite(get("lag_requests", lag)[i]):
            rows.append([stamp, count, LAG_TYPE, "schedule lag", _fmt(get("lag_rps", lag)[i]), "0",
                         *(_fmt(get(f"lag_{p}", lag)[i]) for p in ("p50", "p95", "p99")),
                         _fmt(get("lag_requests", lag)[i]), _fmt(get("lag_failures", lag)[i])])  # fmt: skip
        rows.append([stamp, count, "", AGGREGATED, _fmt(rps[i]), "0",
                     *(_fmt(aggregate[p][i]) for p in ("p50", "p95", "p99")), _fmt(requests[i]),
                     _fmt(failures[i])])  # fmt: skip
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS)
        writer.writerows(rows)


def write_resources(path: Path, found: list[Series], grid: np.ndarray) -> int:
    """The service's and the generator's counters in `resources.csv`; returns the service's worker count."""
    columns = {series.query: _on_grid(series, grid) for series in found}
    workers = columns.pop("workers", np.zeros(0))
    cores = columns.pop(GENERATOR_CORES, None)
    if cores is not None and np.isfinite(cores).any():
        # The cumulative CPU seconds the local sampler writes, so one analysis reads both.
        held = np.diff(grid, prepend=grid[0])
        columns["generator_cpu_seconds"] = np.where(np.isfinite(cores), np.cumsum(np.nan_to_num(cores) * held), np.nan)
    table = np.array([columns.get(column, np.full(grid.size, math.nan)) for column in COLUMNS[1:]]).T
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(
            [f"{when:.3f}", *("" if not math.isfinite(v) else f"{v:.6g}" for v in row)]
            for when, row in zip(grid, table.tolist(), strict=True)
            if any(math.isfinite(v) for v in row)
        )
    finite = workers[np.isfinite(workers)] if workers.size else workers
    return int(finite.max()) if finite.size else 1


def choose_step_s(start: float, end: float, scrape_s: float) -> float:
    """The scrape interval (no finer: nothing is there), at least 1 s."""
    del start, end  # long ranges are split into requests of at most 10,000 points by `export_series`
    return max(MIN_STEP_S, scrape_s)


def build_run_directory(prometheus_url: str, window: RunWindow, out: Path) -> dict[str, Any]:
    """Write the run directory `out` from Prometheus over `window`; returns the plan written to experiment.json."""
    out.mkdir(parents=True, exist_ok=True)
    prometheus_url = check_url(prometheus_url)
    scrape_s = scrape_interval_s(prometheus_url)
    step_s = choose_step_s(window.start, window.end, scrape_s)
    start = math.floor(window.start / step_s) * step_s
    grid = _grid(start, window.end, step_s)
    start_ms, end_ms, step_ms = round(start * 1000), round(float(grid[-1]) * 1000), round(step_s * 1000)
    locust = export_series(prometheus_url, locust_queries(), start_ms, end_ms, step_ms)
    if not any(series.query == "requests" for series in locust):
        raise ExportError(
            f"Prometheus at {prometheus_url} has no Locust metrics (locust_requests_total) between "
            f"{_iso(window.start)} and {_iso(window.end)}: is the Locust master (:9646) scraped under job `locust`?"
        )
    write_history(out / HISTORY_FILE, locust, grid)
    per_user = int(window.plan.get("devices_per_user") or devices_per_user(locust))
    users = next((_on_grid(series, grid) for series in locust if series.query == "users"), np.zeros(grid.size))
    cumulative = export_series(prometheus_url, bucket_queries(), start_ms, end_ms, step_ms)
    interval_s = float(window.plan.get("interval_s") or DEFAULT_INTERVAL_S)
    found_windows = windows(cumulative, grid, np.nan_to_num(users), per_user, interval_s)
    write_windows(out / WINDOWS_FILE, found_windows, window.plan.get("slo"))
    window_s = f"{max(4 * scrape_s, 2 * step_s):g}s"
    workers = write_resources(
        out / RESOURCES_FILE, export_series(prometheus_url, resource_queries(window_s), start_ms, end_ms, step_ms), grid
    )
    evidence = host_evidence(prometheus_url, start, float(grid[-1]), step_s, window_s)
    write_evidence(out, evidence)
    with (out / "prometheus.csv").open("w", newline="") as export:
        write_tidy(export_series(prometheus_url, DEFAULT_QUERIES, start_ms, end_ms, step_ms), export)
    plan = {**window.plan, "workers": workers, "prometheus": prometheus_url, "step_s": step_s}
    plan["devices_per_user"] = per_user
    plan.setdefault("started_at", window.start)
    plan.setdefault("ended_at", window.end)
    (out / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def devices_per_user(locust: list[Series]) -> int:
    """Devices per Locust user, from the master's two gauges (1 when it never ran a user)."""
    users = {when: float(v) for s in locust if s.query == "users" for when, v in s.points}
    ratios = [float(v) / users[when] for s in locust if s.query == "devices" for when, v in s.points
              if users.get(when, 0) > 0]  # fmt: skip
    return max(1, round(max(ratios))) if ratios else 1


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")


__all__ = ["RunRecordError", "RunWindow", "build_run_directory", "run_window"]
