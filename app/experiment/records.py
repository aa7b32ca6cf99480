"""Reading a run directory back: Locust's stats history (`locust_stats_history.csv`, one row per entry per
second with `--csv-full-history`), the fleet's own history (`locust_fleet_history.csv`: devices, slots, given-up
slots, schedule lag and backlog a second), the windows the fleet judged with their exact figures
(`locust_windows.json`, see `app.slo`), the sampled resources (`resources.csv`), the machines and the database
(`hosts.csv`, `hosts.json`) and the plan (`experiment.json`)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.experiment.hosts import HostEvidence, read_hosts
from app.slo import DEFAULT_SLO, Window

AGGREGATED = "Aggregated"
# Schedule lag as a pseudo-request: older runs and the history rebuilt from Prometheus (`prometheus_run`) write
# such rows; they are not requests, so they are left out (the lag is in the windows and the fleet's history).
LAG_TYPE = "LAG"
HISTORY_FILE = "locust_stats_history.csv"
WINDOWS_FILE = "locust_windows.json"
FLEET_HISTORY_FILE = "locust_fleet_history.csv"
RESOURCES_FILE = "resources.csv"
PLAN_FILE = "experiment.json"
PERCENTILE_COLUMNS = {"p50": "50%", "p95": "95%", "p99": "99%"}
STATS_FILE = "locust_stats.csv"
PROMETHEUS_FILE = "prometheus.csv"
# Series of the Prometheus export that only it has (hosts and the database, when their exporters were scraped).
PROMETHEUS_ONLY = ("host_iowait", "postgres_commits_rate")
# Locust's whole-run percentile columns, as (percent, header), for the distribution and the statistics table.
DISTRIBUTION_COLUMNS = [(50.0, "50%"), (66.0, "66%"), (75.0, "75%"), (80.0, "80%"), (90.0, "90%"), (95.0, "95%"),
                        (98.0, "98%"), (99.0, "99%"), (99.9, "99.9%"), (99.99, "99.99%"), (100.0, "100%")]  # fmt: skip


class RunDirectoryError(ValueError):
    """The directory lacks what a report needs (no Locust stats history); the message names the file."""


@dataclass(frozen=True)
class EntryHistory:
    """One Locust entry over time: arrays aligned on `timestamp` (NaN where Locust wrote N/A)."""

    method: str
    name: str
    timestamp: np.ndarray
    users: np.ndarray
    rps: np.ndarray
    total_requests: np.ndarray
    total_failures: np.ndarray
    percentiles: dict[str, np.ndarray]


@dataclass(frozen=True)
class EndpointStats:
    """One request name over the whole run (`locust_stats.csv`); times in ms, `percentiles` percent -> ms."""

    method: str
    name: str
    requests: int
    failures: int
    min_ms: float
    max_ms: float
    rps: float
    percentiles: dict[float, float]


@dataclass(frozen=True)
class RunRecords:
    plan: dict[str, Any]
    entries: list[EntryHistory]  # requests only, no Aggregated
    aggregated: EntryHistory
    windows: list[Window]  # stretches of constant fleet, with their warm-up and judged figures
    slo: str  # the objectives the fleet judged the windows on
    resources: dict[str, np.ndarray]  # column -> values, aligned on resources["timestamp"]
    endpoints: list[EndpointStats] = field(default_factory=list)  # requests only, as entries
    prometheus: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # query -> (times, values)
    fleet: dict[str, np.ndarray] = field(default_factory=dict)  # the fleet's history: column -> values, a row a
    # second aligned on fleet["Timestamp"] (Devices, Requests/s, Request p95 ms, Slots given up, Lag p99 ms, ...)
    hosts: HostEvidence | None = None  # the machines and the database (`hosts.csv`), when recorded


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value


def _history(method: str, name: str, rows: list[dict[str, str]]) -> EntryHistory:
    def column(key: str) -> np.ndarray:
        return np.array([_number(row[key]) for row in rows], dtype=float)

    return EntryHistory(
        method=method,
        name=name,
        timestamp=column("Timestamp"),
        users=column("User Count"),
        rps=column("Requests/s"),
        total_requests=column("Total Request Count"),
        total_failures=column("Total Failure Count"),
        percentiles={key: column(header) for key, header in PERCENTILE_COLUMNS.items()},
    )


def _complete_lines(path: Path) -> io.StringIO:
    """The file up to its last complete line: a run still being written is read as far as it is whole."""
    text = path.read_text()
    return io.StringIO(text[: text.rfind("\n") + 1], newline="")


def read_history(path: Path) -> tuple[list[EntryHistory], EntryHistory]:
    grouped: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in csv.DictReader(_complete_lines(path)):
        grouped.setdefault((row["Type"], row["Name"]), []).append(row)
    aggregated_rows = grouped.pop(("", AGGREGATED), None)
    if not aggregated_rows:
        raise RunDirectoryError(f"{path}: no Aggregated rows (did Locust run with --csv and --csv-full-history?)")
    entries = [_history(m, n, rows) for (m, n), rows in sorted(grouped.items()) if m != LAG_TYPE]
    return entries, _history("", AGGREGATED, aggregated_rows)


def read_windows(path: Path, plan: dict[str, Any]) -> tuple[list[Window], str]:
    """The fleet's windows and the SLO it judged them on (the plan's, else the default, for a run without)."""
    if not path.exists():
        raise RunDirectoryError(f"{path} is missing: the fleet writes it when it stops (Locust with --csv)")
    try:
        document = json.loads(path.read_text())
        windows = [Window.from_json(one) for one in document["windows"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirectoryError(f"{path}: not the fleet's windows ({exc})") from None
    return windows, str(document.get("slo") or plan.get("slo") or DEFAULT_SLO)


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """A CSV of numbers as columns (NaN where a cell is empty or not a number); {} when the file is missing."""
    if not path.exists():
        return {}
    rows = list(csv.DictReader(_complete_lines(path)))
    if not rows:
        return {}
    return {key: np.array([_number(row[key]) for row in rows], dtype=float) for key in rows[0]}


def read_endpoints(path: Path) -> list[EndpointStats]:
    if not path.exists():
        return []
    found = []
    for row in csv.DictReader(_complete_lines(path)):
        if row["Name"] == AGGREGATED or row["Type"] == LAG_TYPE:
            continue
        found.append(
            EndpointStats(
                method=row["Type"],
                name=row["Name"],
                requests=int(_number(row["Request Count"])),
                failures=int(_number(row["Failure Count"])),
                min_ms=_number(row["Min Response Time"]),
                max_ms=_number(row["Max Response Time"]),
                rps=_number(row["Requests/s"]),
                percentiles={percent: _number(row[header]) for percent, header in DISTRIBUTION_COLUMNS},
            )
        )
    return found


def read_prometheus(path: Path, queries: tuple[str, ...] = PROMETHEUS_ONLY) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The export's (tidy) rows of `queries`, summed over their labels at each time; queries with no finite
    value are left out."""
    if not path.exists():
        return {}
    sums: dict[str, dict[float, float]] = {}
    for row in csv.DictReader(_complete_lines(path)):
        value = _number(row.get("value") or "")
        if row.get("query") in queries and math.isfinite(value):
            at = sums.setdefault(row["query"], {})
            at[float(row["timestamp"])] = at.get(float(row["timestamp"]), 0.0) + value
    return {
        query: (np.array(sorted(points)), np.array([points[t] for t in sorted(points)]))
        for query, points in sums.items()
    }


def read_run(directory: Path) -> RunRecords:
    history = directory / HISTORY_FILE
    if not history.exists():
        raise RunDirectoryError(f"{history} is missing: not a run directory of `fleetbed experiment`")
    plan_path = directory / PLAN_FILE
    plan: dict[str, Any] = json.loads(plan_path.read_text()) if plan_path.exists() else {}
    entries, aggregated = read_history(history)
    windows, slo = read_windows(directory / WINDOWS_FILE, plan)
    resources = read_columns(directory / RESOURCES_FILE)
    fleet = read_columns(directory / FLEET_HISTORY_FILE)
    return RunRecords(
        plan,
        entries,
        aggregated,
        windows,
        slo,
        resources,
        read_endpoints(directory / STATS_FILE),
        read_prometheus(directory / PROMETHEUS_FILE),
        fleet,
        read_hosts(directory),
    )
