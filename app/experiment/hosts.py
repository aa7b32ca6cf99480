"""Evidence about the machines and PostgreSQL during a run, by host: `hosts.csv` and `hosts.json` of a run directory.

`hosts.csv` is long: `timestamp, host, quantity, value`, every quantity a gauge (rates are per second, already
differenced), so a step's figure is the mean over its settled part. Two sources write it:

- the local sampler (`app.experiment.sampler`): this machine's /proc (host "local"), with the CPU of its PostgreSQL
  processes when the database runs here;
- Prometheus (`app.experiment.prometheus_evidence`): node_exporter on every host and postgres_exporter (with
  `monitoring/postgres_exporter/queries.yml`), host = the scraped address without its port.

`hosts.json` says which host carried which role (service, database, generator) and what could not be seen (a
missing exporter is named, so a verdict of "unknown" can say where to look).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOSTS_FILE = "hosts.csv"
HOST_ROLES_FILE = "hosts.json"
ROLES = ("service", "database", "generator")

# quantity -> what it is (the evidence lines and the docs use these words)
QUANTITIES: dict[str, str] = {
    "cpu_cores": "cores of the host",
    "cpu_busy_cores": "cores busy (everything but idle and I/O wait)",
    "cpu_iowait_cores": "cores idle waiting for I/O",
    "postgres_cpu_cores": "cores used by PostgreSQL's processes",
    "mem_available_ratio": "memory available, share of the total",
    "swap_pages_per_s": "pages swapped in and out per second",
    "disk_util": "utilisation of the busiest disk",
    "disk_await_ms": "mean time per I/O on the busiest disk",
    "net_bytes_per_s": "network bytes in and out per second",
    "db_backends_cpu": "backends active with no wait event (on CPU or waiting for one)",
    "db_backends_lock": "backends waiting on a lock",
    "db_backends_io_wal": "backends waiting on WAL I/O",
    "db_backends_io_data": "backends waiting on data file I/O",
    "db_backends_lwlock": "backends waiting on a lightweight lock",
    "db_backends_client": "backends in a transaction waiting for their client",
    "db_backends_other": "backends active on another wait (a timeout, an extension, ...)",
    "db_commits_per_s": "commits per second",
    "db_rollbacks_per_s": "rollbacks per second",
    "db_deadlocks_per_s": "deadlocks per second",
    "db_checkpoints_per_s": "checkpoints per second",
    "db_buffer_hit_ratio": "buffer cache hit ratio",
    "db_wal_write_ms": "time per WAL write",
    "db_wal_sync_ms": "time per WAL sync",
    "db_connections": "connections",
    "db_max_connections": "max_connections",
}


@dataclass
class HostEvidence:
    """Readings by host and quantity, the roles each host carried, and what could not be seen."""

    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)
    unseen: list[str] = field(default_factory=list)

    def figure(self, host: str, quantity: str, start: float, end: float) -> float:
        """Mean of `quantity` on `host` over [start, end]; NaN when nothing was read there."""
        times, values = self.series.get(host, {}).get(quantity, (np.empty(0), np.empty(0)))
        inside = values[(times >= start) & (times <= end) & np.isfinite(values)]
        return float(inside.mean()) if inside.size else math.nan

    def hosts_with(self, role: str) -> list[str]:
        return sorted(host for host, roles in self.roles.items() if role in roles)

    def has(self, quantity: str) -> bool:
        return any(quantity in by_quantity for by_quantity in self.series.values())

    def hosts(self) -> list[str]:
        return sorted(set(self.series) | set(self.roles))


def write_rows(path: Path, rows: Iterable[tuple[float, str, str, float]], append: bool = False) -> None:
    new = not append or not path.exists()
    with path.open("a" if append else "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        if new:
            writer.writerow(["timestamp", "host", "quantity", "value"])
        writer.writerows(
            (f"{when:.3f}", host, quantity, f"{value:.6g}" if math.isfinite(value) else "")
            for when, host, quantity, value in rows
        )


def write_roles(directory: Path, roles: dict[str, list[str]], unseen: list[str]) -> None:
    (directory / HOST_ROLES_FILE).write_text(json.dumps({"roles": roles, "unseen": unseen}, indent=2) + "\n")


def read_hosts(directory: Path) -> HostEvidence | None:
    """The host evidence of a run directory, or None when it has none (a run from before it was recorded)."""
    path, roles_path = directory / HOSTS_FILE, directory / HOST_ROLES_FILE
    if not path.exists() and not roles_path.exists():
        return None
    collected: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    if path.exists():
        with path.open(newline="") as source:
            rows = csv.reader(source)
            next(rows, None)
            for when, host, quantity, value in rows:
                times, values = collected.setdefault((host, quantity), ([], []))
                times.append(float(when))
                values.append(float(value) if value else math.nan)
    evidence = HostEvidence()
    for (host, quantity), (times, values) in collected.items():
        order = np.argsort(times, kind="stable")
        evidence.series.setdefault(host, {})[quantity] = (np.asarray(times)[order], np.asarray(values)[order])
    if roles_path.exists():
        described = json.loads(roles_path.read_text())
        evidence.roles = {host: list(roles) for host, roles in described.get("roles", {}).items()}
        evidence.unseen = list(described.get("unseen", []))
    return evidence


def write_evidence(directory: Path, evidence: HostEvidence) -> None:
    """`hosts.csv` and `hosts.json` of `evidence` (a report built from Prometheus)."""
    rows = (
        (float(when), host, quantity, float(value))
        for host, by_quantity in sorted(evidence.series.items())
        for quantity, (times, values) in sorted(by_quantity.items())
        for when, value in zip(times, values, strict=True)
    )
    write_rows(directory / HOSTS_FILE, rows)
    write_roles(directory, evidence.roles, evidence.unseen)


__all__ = [
    "HOSTS_FILE",
    "HOST_ROLES_FILE",
    "QUANTITIES",
    "ROLES",
    "HostEvidence",
    "read_hosts",
    "write_evidence",
    "write_roles",
]
