"""Reading a run directory back: Locust's stats history (`locust_stats_history.csv`, one row per entry per
second with `--csv-full-history`), the sampled resources (`resources.csv`), the machines and the database
(`hosts.csv`, `hosts.json`) and the plan (`experiment.json`)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.experiment.hosts import HostEvidence, read_hosts

LAG_TYPE = "LAG"
AGGREGATED = "Aggregated"
HISTORY_FILE = "locust_stats_history.csv"
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
    entries: list[EntryHistory]  # requests only: no LAG, no Aggregated
    aggregated: EntryHistory
    lag: EntryHistory | None
    resources: dict[str, np.ndarray]  # column -> values, aligned on resources["timestamp"]
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


def read_history(path: Path) -> tuple[list[EntryHistory], EntryHistory, EntryHistory | None]:
    grouped: dict[tuple[str, str], list[dict[str, str]]] = {}
    with path.open(newline="") as source:
        for row in csv.DictReader(source):
            grouped.setdefault((row["Type"], row["Name"]), []).append(row)
    aggregated_rows = grouped.pop(("", AGGREGATED), None)
    if not aggregated_rows:
        raise RunDirectoryError(f"{path}: no Aggregated rows (did Locust run with --csv and --csv-full-history?)")
    lag = next((_history(m, n, rows) for (m, n), rows in grouped.items() if m == LAG_TYPE), None)
    entries = [_history(m, n, rows) for (m, n), rows in sorted(grouped.items()) if m != LAG_TYPE]
    return entries, _history("", AGGREGATED, aggregated_rows), lag


def read_resources(path: Path) -> dict[str, np.ndarray]:
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
    entries, aggregated, lag = read_history(history)
    resources = read_resources(directory / RESOURCES_FILE)
    return RunRecords(plan, entries, aggregated, lag, resources, read_hosts(directory))
