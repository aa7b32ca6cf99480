"""The machines and PostgreSQL of a deployment, read back from Prometheus: `hosts.csv` and `hosts.json` of a report.

Every quantity of `app.experiment.hosts.QUANTITIES` has one PromQL expression here, by `instance`: node_exporter's
for the machines (job `node`), postgres_exporter's for the database (job `postgres`, with the extra queries of
`monitoring/postgres_exporter/queries.yml` for wait events, WAL timing and checkpoints). A host is the scraped
address without its port, resolved to an IP address when the name resolves here; the roles come from the jobs that
scrape each host (`fleetbed`: the service, `locust`: the generator, `postgres`: the database). When only one
machine runs a node exporter (docker compose: every container on one host), every role is placed on it.

What is missing is named in `unseen` (no node exporter on the database host, postgres_exporter without the extra
queries, ...), so the verdict can say what it could not see.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from app.experiment.hosts import HostEvidence
from app.stack.prometheus_export import Series, export_series

QUERIES_FILE = "monitoring/postgres_exporter/queries.yml"
ROLE_JOBS = {"fleetbed": "service", "locust": "generator", "postgres": "database"}


def evidence_queries(window: str) -> dict[str, str]:
    """quantity -> PromQL by instance; counters as rates over `window` (a Prometheus duration such as `5s`)."""

    def rate(*selectors: str) -> str:
        """The rate of the first selector that has series (alternatives for different PostgreSQL versions)."""
        return " or ".join(f"sum by (instance) (rate({selector}[{window}]))" for selector in selectors)

    def total_rate(*selectors: str) -> str:
        """The sum of several counters' rates (each summed by instance first: rate() drops the metric name)."""
        return " + ".join(f"sum by (instance) (rate({selector}[{window}]))" for selector in selectors)

    def per_op_ms(seconds: str, ops: str) -> str:
        return f"({seconds}) / (({ops}) > 0)"

    def wal(column: str) -> str:
        return "(" + rate(f"fleetbed_pg_wal_io_{column}", f"fleetbed_pg_wal_{column}") + ")"

    return {
        "cpu_cores": 'count by (instance) (node_cpu_seconds_total{mode="idle"})',
        "cpu_busy_cores": rate('node_cpu_seconds_total{mode!~"idle|iowait"}'),
        "cpu_iowait_cores": rate('node_cpu_seconds_total{mode="iowait"}'),
        "mem_available_ratio": "sum by (instance) (node_memory_MemAvailable_bytes)"
        " / sum by (instance) (node_memory_MemTotal_bytes)",
        "swap_pages_per_s": total_rate("node_vmstat_pswpin", "node_vmstat_pswpout"),
        "disk_util": f"max by (instance) (rate(node_disk_io_time_seconds_total[{window}]))",
        "disk_await_ms": "max by (instance) ("
        + per_op_ms(
            f"1000 * (rate(node_disk_read_time_seconds_total[{window}])"
            f" + rate(node_disk_write_time_seconds_total[{window}]))",
            f"rate(node_disk_reads_completed_total[{window}]) + rate(node_disk_writes_completed_total[{window}])",
        )
        + ")",
        "net_bytes_per_s": total_rate(
            'node_network_receive_bytes_total{device!="lo"}', 'node_network_transmit_bytes_total{device!="lo"}'
        ),
        **{
            f"db_backends_{wait}": f'sum by (instance) (fleetbed_pg_backends_count{{wait="{wait}"}})'
            for wait in ("cpu", "lock", "io_wal", "io_data", "lwlock", "client", "other")
        },
        "db_commits_per_s": rate("pg_stat_database_xact_commit"),
        "db_rollbacks_per_s": rate("pg_stat_database_xact_rollback"),
        "db_deadlocks_per_s": rate("pg_stat_database_deadlocks"),
        "db_checkpoints_per_s": rate("fleetbed_pg_checkpointer_count", "fleetbed_pg_checkpoints_count"),
        "db_buffer_hit_ratio": per_op_ms(
            rate("pg_stat_database_blks_hit"),
            rate("pg_stat_database_blks_hit") + " + " + rate("pg_stat_database_blks_read"),
        ),  # a ratio: the helper only divides
        "db_wal_write_ms": per_op_ms(wal("write_ms"), wal("writes")),
        "db_wal_sync_ms": per_op_ms(wal("sync_ms"), wal("syncs")),
        "db_connections": "sum by (instance) (pg_stat_activity_count)",
        "db_max_connections": "max by (instance) (pg_settings_max_connections)",
    }


def resolve(address: str) -> str:
    """An instance's host: its address without the port, as an IP address when the name resolves here."""
    host = address.rsplit(":", 1)[0].strip("[]") if address.count(":") <= 1 or address.startswith("[") else address
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])
    except (OSError, IndexError, UnicodeError):
        return host


@dataclass
class Placement:
    """Where each job's instances run: host -> roles, and which hosts have a node exporter."""

    roles: dict[str, list[str]] = field(default_factory=dict)
    node_hosts: set[str] = field(default_factory=set)
    by_instance: dict[str, str] = field(default_factory=dict)

    def host_of(self, instance: str) -> str:
        return self.by_instance.setdefault(instance, resolve(instance))


def place(up_series: list[Series]) -> Placement:
    """Roles and node exporters by host, from the `up` series (labels job and instance)."""
    placement = Placement()
    for series in up_series:
        job, instance = series.labels.get("job", ""), series.labels.get("instance", "")
        host = placement.host_of(instance)
        if job == "node":
            placement.node_hosts.add(host)
            placement.roles.setdefault(host, [])
        role = ROLE_JOBS.get(job)
        if role is not None:
            roles = placement.roles.setdefault(host, [])
            if role not in roles:
                roles.append(role)
    if len(placement.node_hosts) == 1:
        # One node exporter: every container of a one-machine deployment (docker compose) runs on its host.
        (only,) = placement.node_hosts
        merged = sorted({role for roles in placement.roles.values() for role in roles})
        placement.roles = {only: [role for role in ("service", "database", "generator") if role in merged]}
        placement.by_instance = dict.fromkeys(placement.by_instance, only)
    return placement


def unseen_sources(placement: Placement, seen: set[str]) -> Iterator[str]:
    """What the exporters did not show, each named with how to fix it."""
    for host, roles in sorted(placement.roles.items()):
        if roles and host not in placement.node_hosts:
            yield (
                f"host {host} ({', '.join(roles)}): its CPU, memory, disks and network (no node_exporter scraped "
                "there under job `node`)"
            )
    if not any("database" in roles for roles in placement.roles.values()):
        yield "PostgreSQL (no postgres_exporter scraped under job `postgres`)"
    elif "db_backends_cpu" not in seen:
        yield f"PostgreSQL's wait events (postgres_exporter runs without --extend.query-path={QUERIES_FILE})"
    elif "db_wal_sync_ms" not in seen:
        yield "WAL write and sync timing (set track_wal_io_timing = on in PostgreSQL)"


def host_evidence(prometheus_url: str, start: float, end: float, step_s: float, window: str) -> HostEvidence:
    """The machines' and the database's readings over [start, end] at `step_s`, placed on their hosts."""
    step_ms = max(1, round(step_s * 1000))
    start_ms, end_ms = int(start * 1000), int(end * 1000)
    up = export_series(prometheus_url, {"up": "up"}, start_ms, end_ms, step_ms)
    placement = place(up)
    found = export_series(prometheus_url, evidence_queries(window), start_ms, end_ms, step_ms)
    evidence = HostEvidence(roles=placement.roles)
    for series in found:
        host = placement.host_of(series.labels.get("instance", ""))
        times = np.array([when for when, _ in series.points], dtype=float)
        values = np.array([float(value) for _, value in series.points], dtype=float)
        evidence.series.setdefault(host, {})[series.query] = (times, values)
    seen = {quantity for by_quantity in evidence.series.values() for quantity in by_quantity}
    evidence.unseen = list(unseen_sources(placement, seen))
    return evidence


__all__ = ["QUERIES_FILE", "evidence_queries", "host_evidence", "place"]
