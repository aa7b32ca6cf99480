"""Reading a run directory back: Locust's stats history (`locust_stats_history.csv`, one row per entry per
second with `--csv-full-history`), the fleet's own history (`locust_fleet_history.csv`: devices, slots, given-up
slots, schedule lag and backlog a second), the windows the fleet judged with their exact figures
(`locust_windows.json`, see `app.slo`), the sampled resources (`resources.csv`), the machines and the database
(`hosts.csv`, `hosts.json`) and the plan (`experiment.json`)."""

from __future__ import annotations

import csv
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
class RunRecords:
    plan: dict[str, Any]
    entries: list[EntryHistory]  # requests only, no Aggregated
    aggregated: EntryHistory
    windows: list[Window]  # stretches of constant fleet, with their warm-up and judged figures
    slo: str  # the objectives the fleet judged the windows on
    resources: dict[str, np.ndarray]  # column -> values, aligned on resources["timestamp"]
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


def read_history(path: Path) -> tuple[list[EntryHistory], EntryHistory]:
    grouped: dict[tuple[str, str], list[dict[str, str]]] = {}
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
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
    with path.open(newline="") as source:
        rows = list(csv.DictReader(source))
    if not rows:
        return {}
    return {key: np.array([_number(row[key]) for row in rows], dtype=float) for key in rows[0]}


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
    return RunRecords(plan, entries, aggregated, windows, slo, resources, fleet, read_hosts(directory))
