"""Prometheus range queries to CSV: the engine of `fleetbed export`.

Prometheus refuses a range query with more than 11,000 points per series, so a long range is cut into chunks of
at most `MAX_POINTS_PER_REQUEST` steps, aligned on the same grid (start + k * step) and never overlapping.

Errors (all `ExportError`, whose message says what to do):
    ExportError
    ├── PrometheusUnreachable   nothing answers at the URL, or it is not a Prometheus API
    └── QueryRejected           Prometheus refused a query (syntax error, unknown function, bad range)
"""

from __future__ import annotations

import csv
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

PROMETHEUS_POINT_LIMIT = 11_000
MAX_POINTS_PER_REQUEST = 10_000
REQUEST_TIMEOUT_S = 60.0

# The panels of monitoring/grafana/dashboards/*.json worth keeping with a run (a test checks each is on one).
DEFAULT_QUERIES: dict[str, str] = {
    "active_devices": "max(fleetbed_active_devices)",
    "request_rate": "sum by (route) (fleetbed:http_requests:rate1m)",
    "responses_by_status": "sum by (status) (fleetbed:http_requests:rate1m)",
    "error_ratio": "fleetbed:http_errors:ratio_rate5m",
    "latency_p50_seconds": "fleetbed:http_request_duration_seconds:p50",
    "latency_p95_seconds": "fleetbed:http_request_duration_seconds:p95",
    "latency_p99_seconds": "fleetbed:http_request_duration_seconds:p99",
    "measurement_rows": "max(fleetbed_measurement_rows)",
    "readings_stored_rate": "fleetbed:readings_stored:rate1m",
    "ingest_commit_p95_seconds": "fleetbed:ingest_commit_duration_seconds:p95",
    "ingest_queue_readings": "sum(fleetbed_ingest_queue_readings)",
    "service_cpu_cores": "fleetbed:process_cpu_seconds:rate1m",
    "service_rss_bytes": 'sum by (instance) (process_resident_memory_bytes{job="fleetbed"})',
    "gc_time_fraction": "fleetbed:gc_pause_seconds:rate1m",
    "gc_pause_p99_seconds": "fleetbed:gc_pause_seconds:p99",
    "event_loop_lag_p99_seconds": "fleetbed:event_loop_lag_seconds:p99",
    "pool_in_use": "sum(fleetbed_db_pool_in_use_connections)",
    "pool_waiting": "sum(fleetbed_db_pool_waiting_acquires)",
    "pool_acquire_p95_seconds": "fleetbed:db_pool_acquire_duration_seconds:p95",
    "query_p95_seconds": "fleetbed:db_query_duration_seconds:p95",
    "statement_p95_seconds": "fleetbed:db_statement_duration_seconds:p95",
    "host_iowait": 'avg(rate(node_cpu_seconds_total{mode="iowait"}[1m]))',
    "postgres_commits_rate": "sum(rate(pg_stat_database_xact_commit[1m]))",
    "locust_users": "sum(locust_users)",
    "locust_request_rate": "locust:requests:rate1m",
    "locust_failure_rate": "sum by (name) (rate(locust_failures_total[1m]))",
    "locust_latency_p95_seconds": "locust:request_duration_seconds:p95",
    "schedule_lag_p99_seconds": "fleetbed_generator:schedule_lag_seconds:p99",
}


class ExportError(Exception):
    """Anything that stops an export; the message is meant for the user."""


class PrometheusUnreachable(ExportError):
    """Raised when nothing answers at the Prometheus URL, or what answers is not Prometheus's HTTP API."""


class QueryRejected(ExportError):
    """Raised when Prometheus answers a query with an error (bad PromQL, bad range or step)."""


@dataclass(frozen=True)
class Series:
    """One series of one named query: its labels and its (unix seconds, value) points."""

    query: str
    labels: dict[str, str]
    points: list[tuple[float, str]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.query, tuple(sorted(self.labels.items()))

    @property
    def column(self) -> str:
        """The wide-format column name: `query{a="x",b="y"}`, or `query` alone."""
        if not self.labels:
            return self.query
        inner = ",".join(f'{name}="{value}"' for name, value in sorted(self.labels.items()))
        return f"{self.query}{{{inner}}}"


def split_range(
    start_ms: int, end_ms: int, step_ms: int, max_points: int = MAX_POINTS_PER_REQUEST
) -> list[tuple[int, int]]:
    """Chunks [(start, end)] covering start, start+step, ... <= end, at most `max_points` points each."""
    if step_ms <= 0:
        raise ExportError("--step must be positive")
    if end_ms < start_ms:
        raise ExportError("--end is before --start")
    points = (end_ms - start_ms) // step_ms + 1
    chunks = []
    for first in range(0, points, max_points):
        last = min(points, first + max_points) - 1
        chunks.append((start_ms + first * step_ms, start_ms + last * step_ms))
    return chunks


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310 (URL checked by caller)
            body: dict[str, Any] = json.load(response)
            return body
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                error_body: dict[str, Any] = json.load(exc)
            except ValueError:
                raise PrometheusUnreachable(f"{url} answered {exc.code} {exc.reason}: is this a Prometheus?") from exc
        return error_body
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PrometheusUnreachable(f"cannot reach Prometheus at {url.split('/api/')[0]}: {reason}") from exc
    except ValueError as exc:
        raise PrometheusUnreachable(f"{url} did not answer JSON: is this a Prometheus?") from exc


def check_url(base_url: str) -> str:
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ExportError(f"--prometheus must be an http(s) URL like http://127.0.0.1:9090, got {base_url!r}")
    return base_url.rstrip("/")


def range_query(base_url: str, name: str, expr: str, start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
    params = urllib.parse.urlencode(
        {"query": expr, "start": f"{start_ms / 1000:.3f}", "end": f"{end_ms / 1000:.3f}", "step": f"{step_ms / 1000:g}"}
    )
    body = _get_json(f"{base_url}/api/v1/query_range?{params}")
    if body.get("status") != "success":
        if body.get("status") != "error" or "error" not in body:
            raise PrometheusUnreachable(f"{base_url} did not answer like a Prometheus API: is this a Prometheus?")
        raise QueryRejected(f"Prometheus rejected query {name} ({expr}): {body['error']}")
    return [
        # The metric name of a plain selector is in the query itself; keeping it would only add a column.
        Series(
            name,
            {k: v for k, v in item["metric"].items() if k != "__name__"},
            [(float(t), v) for t, v in item["values"]],
        )
        for item in body["data"]["result"]
    ]


def export_series(
    base_url: str,
    queries: dict[str, str],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    on_request: Callable[[int, int], None] | None = None,
    max_points: int = MAX_POINTS_PER_REQUEST,
) -> list[Series]:
    """Every query over the whole range, chunk by chunk, merged per series; `on_request(done, total)` after each."""
    base_url = check_url(base_url)
    chunks = split_range(start_ms, end_ms, step_ms, max_points)
    total = len(chunks) * len(queries)
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
    done = 0
    for name, expr in queries.items():
        for chunk_start, chunk_end in chunks:
            for series in range_query(base_url, name, expr, chunk_start, chunk_end, step_ms):
                merged.setdefault(series.key, Series(name, series.labels)).points.extend(series.points)
            done += 1
            if on_request is not None:
                on_request(done, total)
    order = {name: index for index, name in enumerate(queries)}
    return sorted(merged.values(), key=lambda series: (order[series.query], series.key[1]))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


TIDY_COLUMNS = ("query", "timestamp", "time", "value")


def label_columns(series: Iterable[Series]) -> list[str]:
    return sorted({name for one in series for name in one.labels})


def label_header(label: str) -> str:
    """A label's column name: the label itself, or `label_<name>` when it would shadow a fixed column."""
    return f"label_{label}" if label in TIDY_COLUMNS else label


def write_tidy(series: list[Series], out: IO[str]) -> int:
    """Long format: one row per (series, timestamp); labels as columns (empty where a series lacks one).

    A label named like a fixed column (`query`, for the database query-duration histogram) becomes `label_query`.
    """
    labels = label_columns(series)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*TIDY_COLUMNS, *map(label_header, labels)])
    rows = 0
    for one in series:
        label_values = [one.labels.get(label, "") for label in labels]
        for timestamp, value in one.points:
            writer.writerow([one.query, f"{timestamp:.3f}", _iso(timestamp), value, *label_values])
            rows += 1
    return rows


def write_wide(series: list[Series], out: IO[str]) -> int:
    """Wide format: one row per timestamp, one column per series (empty where a series has no point)."""
    columns = [one.column for one in series]
    by_column = [dict(one.points) for one in series]
    timestamps = sorted({timestamp for one in series for timestamp, _ in one.points})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "time", *columns])
    for timestamp in timestamps:
        writer.writerow([f"{timestamp:.3f}", _iso(timestamp), *(values.get(timestamp, "") for values in by_column)])
    return len(timestamps)


def points_in_range(start_ms: int, end_ms: int, step_ms: int) -> int:
    return math.floor((end_ms - start_ms) / step_ms) + 1
