"""A run that Prometheus kept, made up second by second and backfilled into a real Prometheus TSDB with
`promtool tsdb create-blocks-from openmetrics`: the Locust master, the service, node_exporter on two hosts and
postgres_exporter (with fleetbed's extra queries), under the metric names the real exporters use.

The fleet ramps in `steps` equal steps of users; from the step `stress_from` on, the planted trouble shows:
latency jumps, and the database's backends wait on what `plant` says (`lock`, `io_wal`, `cpu`, ...), or the busiest
Locust worker runs out of CPU (`generator`). Used by the
report tests (a few minutes of history) and by `bench/report_from_prometheus.py` (an hour at 1 s).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVICE = "10.9.0.2"
DATABASE = "10.9.0.3"
GENERATOR = "10.9.0.4"
LATENCY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAITS = ("cpu", "lock", "io_wal", "io_data", "lwlock", "client", "other")


@dataclass(frozen=True)
class SyntheticRun:
    start: float  # unix seconds, whole
    seconds: int
    steps: int
    users_per_step: int
    stress_from: int  # index of the first troubled step
    plant: str  # a wait class of fleetbed_pg_backends_count

    def step_of(self, second: int) -> int:
        return min(self.steps - 1, second * self.steps // self.seconds)

    def users(self, second: int) -> int:
        return (self.step_of(second) + 1) * self.users_per_step

    def troubled(self, second: int) -> bool:
        return self.step_of(second) >= self.stress_from


def _series(name: str, labels: dict[str, str], values: Iterator[tuple[float, float]]) -> Iterator[str]:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for when, value in values:
        yield f"{name}{{{inner}}} {value:.6g} {when:.3f}\n"


def lines(run: SyntheticRun) -> Iterator[str]:
    """OpenMetrics text, one family after the other, each series' samples in time order, ending with `# EOF`."""
    seconds = range(run.seconds)
    at = [run.start + s for s in seconds]

    def counter(rate: list[float]) -> Iterator[tuple[float, float]]:
        total = 0.0
        for when, per_s in zip(at, rate, strict=True):
            total += per_s
            yield when, total

    def gauge(values: list[float]) -> Iterator[tuple[float, float]]:
        return zip(at, values, strict=False)

    users = [float(run.users(s)) for s in seconds]
    latency = [0.9 if run.troubled(s) else 0.008 for s in seconds]
    locust = {"job": "locust", "instance": f"{GENERATOR}:9646"}
    service = {"job": "fleetbed", "instance": f"{SERVICE}:8080", "worker": "0"}
    node_db = {"job": "node", "instance": f"{DATABASE}:9100"}
    node_app = {"job": "node", "instance": f"{SERVICE}:9100"}
    postgres = {"job": "postgres", "instance": f"{DATABASE}:9187"}

    for labels in (locust, {k: v for k, v in service.items() if k != "worker"}, node_db, node_app, postgres):
        yield from _series("up", labels, gauge([1.0] * run.seconds))
    yield from _series("locust_users", locust, gauge(users))
    yield from _series("fleetbed_generator_devices", locust, gauge(users))
    request = {**locust, "method": "POST", "name": "/measurement"}
    yield from _series("locust_requests_total", request, counter(users))
    yield from _series("locust_failures_total", request, counter([0.0] * run.seconds))
    for bound in (*LATENCY_BOUNDS, float("inf")):
        le = "+Inf" if bound == float("inf") else repr(bound)
        rate = [u if lat <= bound else 0.0 for u, lat in zip(users, latency, strict=True)]
        yield from _series("locust_request_duration_seconds_bucket", {**request, "le": le}, counter(rate))
    for bound in (0.001, 0.25, float("inf")):
        le = "+Inf" if bound == float("inf") else repr(bound)
        yield from _series("fleetbed_generator_schedule_lag_seconds_bucket", {**locust, "le": le}, counter(users))
    yield from _series("fleetbed_generator_schedule_lag_seconds_count", locust, counter(users))
    yield from _series("fleetbed_generator_missed_slots_total", locust, counter([0.0] * run.seconds))
    yield from _series("process_cpu_seconds_total", locust, counter([0.3] * run.seconds))
    # The workers' CPU as they report it to the master; plant `generator`: the busiest one runs out of its core.
    busiest = [0.97 if run.plant == "generator" and run.troubled(s) else 0.4 for s in seconds]
    yield from _series("fleetbed_generator_busiest_worker_cpu_cores", locust, gauge(busiest))
    yield from _series("fleetbed_generator_workers_cpu_cores", locust, gauge([2 * b for b in busiest]))

    commit_s = [0.12 if run.troubled(s) else 0.002 for s in seconds]
    yield from _series("process_cpu_seconds_total", service, counter([0.0002 * u for u in users]))
    yield from _series("fleetbed_ingest_commit_duration_seconds_sum", service, counter(commit_s))
    yield from _series("fleetbed_ingest_commit_duration_seconds_count", service, counter([1.0] * run.seconds))
    yield from _series("fleetbed_http_request_duration_seconds_sum", service,
                       counter([u * lat for u, lat in zip(users, latency, strict=True)]))  # fmt: skip
    yield from _series("fleetbed_http_request_duration_seconds_count", service, counter(users))
    yield from _series("fleetbed_db_pool_max_connections", service, gauge([10.0] * run.seconds))
    yield from _series("fleetbed_db_pool_in_use_connections", service, gauge([3.0] * run.seconds))
    yield from _series("fleetbed_db_pool_waiting_acquires", service, gauge([0.0] * run.seconds))

    for node in (node_db, node_app):
        for cpu in ("0", "1"):
            for mode, per_s in (("idle", 0.8), ("user", 0.15), ("system", 0.05), ("iowait", 0.0)):
                labels = {**node, "cpu": cpu, "mode": mode}
                yield from _series("node_cpu_seconds_total", labels, counter([per_s] * run.seconds))
        yield from _series("node_memory_MemAvailable_bytes", node, gauge([6e9] * run.seconds))
        yield from _series("node_memory_MemTotal_bytes", node, gauge([8e9] * run.seconds))
        for name in ("node_vmstat_pswpin", "node_vmstat_pswpout"):
            yield from _series(name, node, counter([0.0] * run.seconds))
        for name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total"):
            yield from _series(name, {**node, "device": "eth0"}, counter([1e5] * run.seconds))

    for wait in WAITS:
        values = [3.0 if wait == run.plant and run.troubled(s) else 0.1 for s in seconds]
        yield from _series("fleetbed_pg_backends_count", {**postgres, "wait": wait}, gauge(values))
    database = {**postgres, "datname": "fleetbed"}
    yield from _series("pg_stat_database_xact_commit", database, counter([1.0] * run.seconds))
    yield from _series("pg_stat_database_xact_rollback", database, counter([0.0] * run.seconds))
    yield from _series("pg_stat_database_deadlocks", database, counter([0.0] * run.seconds))
    yield from _series("pg_stat_database_blks_hit", database, counter([500.0] * run.seconds))
    yield from _series("pg_stat_database_blks_read", database, counter([1.0] * run.seconds))
    yield from _series("pg_settings_max_connections", postgres, gauge([100.0] * run.seconds))
    yield from _series("pg_stat_activity_count", {**database, "state": "active"}, gauge([4.0] * run.seconds))
    yield from _series("fleetbed_pg_wal_io_syncs", postgres, counter([1.0] * run.seconds))
    yield from _series("fleetbed_pg_wal_io_sync_ms", postgres, counter([0.4] * run.seconds))
    yield "# EOF\n"


def backfill(run: SyntheticRun, storage: Path, workdir: Path) -> None:
    """Write the run's OpenMetrics text and turn it into TSDB blocks in `storage` (Prometheus's data directory)."""
    text = workdir / "synthetic.om"
    with text.open("w") as out:
        out.writelines(lines(run))
    storage.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text), str(storage)],
        check=True,
        capture_output=True,
        text=True,
    )


def config(path: Path) -> Path:
    """A prometheus.yml with no targets (the history is all backfilled) and a 1 s scrape interval."""
    path.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs: []\n")
    return path
