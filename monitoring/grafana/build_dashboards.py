"""Builds the Grafana dashboards in dashboards/ from the panel lists below:
`python monitoring/grafana/build_dashboards.py`.

Edit the panels here, run the script, commit both. A test checks the JSON files match this script's output and
that every expression returns series from a real Prometheus scraping a real service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

# (title, unit, [(expr, legend), ...])
Panel = tuple[str, str, list[tuple[str, str]]]

FLEET: list[Panel] = [
    (
        "Devices",
        "short",
        [
            ("max(fleetbed_active_devices)", "active (state changed in 5 min)"),
            ("sum(fleetbed_generator_devices)", "simulated"),
        ],
    ),
    ("Request rate by route", "reqps", [("sum by (route) (fleetbed:http_requests:rate1m)", "{{route}}")]),
    ("Responses by status", "reqps", [("sum by (status) (fleetbed:http_requests:rate1m)", "{{status}}")]),
    ("Server error ratio (SLO: under 1%)", "percentunit", [("fleetbed:http_errors:ratio_rate5m", "5xx / all")]),
    ("Latency p50", "s", [("fleetbed:http_request_duration_seconds:p50", "{{route}}")]),
    ("Latency p95 (SLO: under 500 ms)", "s", [("fleetbed:http_request_duration_seconds:p95", "{{route}}")]),
    ("Latency p99", "s", [("fleetbed:http_request_duration_seconds:p99", "{{route}}")]),
    ("Rows in measurement", "short", [("max(fleetbed_measurement_rows)", "rows")]),
    (
        "Ingest rate",
        "short",
        [
            ("fleetbed:readings_stored:rate1m", "stored/s"),
            ("sum(rate(fleetbed_readings_received_total[1m]))", "received/s"),
            ("sum(rate(fleetbed_ingest_rejected_readings_total[1m]))", "rejected/s (queue full)"),
        ],
    ),
    (
        "Insert sequence: write + commit of one batch",
        "s",
        [
            ("fleetbed:ingest_commit_duration_seconds:p95", "p95"),
            (
                "sum(rate(fleetbed_ingest_commit_duration_seconds_sum[1m]))"
                " / sum(rate(fleetbed_ingest_commit_duration_seconds_count[1m]))",
                "mean",
            ),
        ],
    ),
    (
        "Ingest batch size and queue",
        "short",
        [
            ("fleetbed:ingest_batch_readings:mean1m", "readings per commit"),
            ("sum(fleetbed_ingest_queue_readings)", "readings queued"),
        ],
    ),
    ("Logins", "short", [("sum by (new_device) (rate(fleetbed_logins_total[1m]))", "new={{new_device}}")]),
]

RUNTIME: list[Panel] = [
    ("Service CPU (cores)", "short", [("fleetbed:process_cpu_seconds:rate1m", "{{instance}}")]),
    (
        "Host CPU by mode (cores)",
        "short",
        [('sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[1m]))', "{{mode}}")],
    ),
    (
        "Resident memory",
        "bytes",
        [('sum by (instance) (process_resident_memory_bytes{job="fleetbed"})', "{{instance}}")],
    ),
    ("Host memory available", "bytes", [("sum(node_memory_MemAvailable_bytes)", "available")]),
    (
        "GC collections by generation",
        "short",
        [
            ('sum by (generation) (rate(python_gc_collections_total{job="fleetbed"}[1m]))', "gen {{generation}}/s"),
        ],
    ),
    ("Time in GC (fraction of wall time)", "percentunit", [("fleetbed:gc_pause_seconds:rate1m", "gen {{generation}}")]),
    ("GC pause p99", "s", [("fleetbed:gc_pause_seconds:p99", "gen {{generation}}")]),
    (
        "Event-loop lag",
        "s",
        [
            ("fleetbed:event_loop_lag_seconds:p99", "p99 {{instance}}"),
            ("max by (instance) (fleetbed_event_loop_last_lag_seconds)", "last {{instance}}"),
        ],
    ),
    (
        "Open file descriptors",
        "short",
        [
            ('sum by (instance) (process_open_fds{job="fleetbed"})', "open {{instance}}"),
            ('max(process_max_fds{job="fleetbed"})', "limit"),
        ],
    ),
    (
        "Command cache",
        "short",
        [
            ("sum by (result) (rate(fleetbed_command_cache_lookups_total[1m]))", "{{result}}/s"),
        ],
    ),
]

DATABASE: list[Panel] = [
    (
        "Connection pool",
        "short",
        [
            ("sum(fleetbed_db_pool_size_connections)", "open"),
            ("sum(fleetbed_db_pool_in_use_connections)", "in use"),
            ("sum(fleetbed_db_pool_max_connections)", "max"),
            ("sum(fleetbed_db_pool_waiting_acquires)", "waiting"),
        ],
    ),
    ("Pool utilization", "percentunit", [("fleetbed:db_pool:utilization", "{{instance}}")]),
    (
        "Pool acquire time p95",
        "s",
        [
            ("fleetbed:db_pool_acquire_duration_seconds:p95", "p95"),
            ("sum(rate(fleetbed_db_pool_acquire_failures_total[1m]))", "failures/s"),
        ],
    ),
    ("Query time p95 by query (pool wait included)", "s", [("fleetbed:db_query_duration_seconds:p95", "{{query}}")]),
    ("Statement time p95 (on the connection)", "s", [("fleetbed:db_statement_duration_seconds:p95", "{{statement}}")]),
    ("Statements per second", "short", [("fleetbed:db_statements:rate1m", "{{statement}}")]),
    (
        "Commit time p95",
        "s",
        [
            ("fleetbed:ingest_commit_duration_seconds:p95", "ingest batch: write + commit"),
            # An ingest batch is one autocommitted statement on every server; COMMITs come from other writers.
            (
                "histogram_quantile(0.95, sum by (le, statement) (rate(fleetbed_db_statement_duration_seconds_bucket"
                '{statement=~"commit|insert:measurement"}[1m])))',
                "{{statement}}",
            ),
        ],
    ),
    (
        "IO wait",
        "percentunit",
        [
            ('avg(rate(node_cpu_seconds_total{mode="iowait"}[1m]))', "iowait"),
        ],
    ),
    (
        "PostgreSQL transactions",
        "short",
        [
            ("sum(rate(pg_stat_database_xact_commit[1m]))", "commits/s"),
            ("sum(rate(pg_stat_database_xact_rollback[1m]))", "rollbacks/s"),
        ],
    ),
    ("PostgreSQL rows written", "short", [("sum(rate(pg_stat_database_tup_inserted[1m]))", "inserted/s")]),
    (
        "PostgreSQL cache hit ratio",
        "percentunit",
        [
            (
                "sum(rate(pg_stat_database_blks_hit[1m]))"
                " / (sum(rate(pg_stat_database_blks_hit[1m])) + sum(rate(pg_stat_database_blks_read[1m])))",
                "hit ratio",
            ),
        ],
    ),
    (
        "PostgreSQL backends and locks",
        "short",
        [
            ("sum(pg_stat_database_numbackends)", "backends"),
            ("sum by (mode) (pg_locks_count)", "locks {{mode}}"),
        ],
    ),
    ("Database size", "bytes", [("sum by (datname) (pg_database_size_bytes)", "{{datname}}")]),
    # What the verdict reads about PostgreSQL itself (monitoring/postgres_exporter/queries.yml).
    (
        "PostgreSQL backends by what they wait for",
        "short",
        [("sum by (wait) (fleetbed_pg_backends_count)", "{{wait}}")],
    ),
    (
        "WAL time per sync and per write",
        "ms",
        [
            # pg_stat_wal up to PostgreSQL 17, pg_stat_io from 18: whichever the server has.
            (
                "(sum(rate(fleetbed_pg_wal_sync_ms[1m])) or sum(rate(fleetbed_pg_wal_io_sync_ms[1m])))"
                " / (sum(rate(fleetbed_pg_wal_syncs[1m])) or sum(rate(fleetbed_pg_wal_io_syncs[1m])))",
                "per sync",
            ),
            (
                "(sum(rate(fleetbed_pg_wal_write_ms[1m])) or sum(rate(fleetbed_pg_wal_io_write_ms[1m])))"
                " / (sum(rate(fleetbed_pg_wal_writes[1m])) or sum(rate(fleetbed_pg_wal_io_writes[1m])))",
                "per write",
            ),
        ],
    ),
    (
        "Checkpoints and deadlocks",
        "short",
        [
            (
                "60 * (sum(rate(fleetbed_pg_checkpoints_count[5m])) or sum(rate(fleetbed_pg_checkpointer_count[5m])))",
                "checkpoints/min",
            ),
            ("sum(rate(pg_stat_database_deadlocks[1m]))", "deadlocks/s"),
        ],
    ),
    (
        "Connections against max_connections",
        "short",
        [
            ("sum(pg_stat_database_numbackends)", "connections"),
            ("max(pg_settings_max_connections)", "max_connections"),
        ],
    ),
    (
        "Database errors answered, by SQLSTATE class",
        "short",
        [
            (
                "sum by (sqlstate_class, status) (rate(fleetbed_database_errors_total[1m]))",
                "{{sqlstate_class}} -> {{status}}",
            )
        ],
    ),
]

GENERATOR: list[Panel] = [
    (
        "Users and devices",
        "short",
        [
            ("sum(locust_users)", "users"),
            ("sum(fleetbed_generator_devices)", "devices"),
        ],
    ),
    ("Locust workers (distributed runs)", "short", [("sum by (state) (locust_workers)", "{{state}}")]),
    ("Requests per second by name", "reqps", [("locust:requests:rate1m", "{{name}}")]),
    ("Failures per second by name", "reqps", [("sum by (name) (rate(locust_failures_total[1m]))", "{{name}}")]),
    ("Failure ratio by name", "percentunit", [("locust:failures:ratio_rate1m", "{{name}}")]),
    ("Locust latency p95 by name", "s", [("locust:request_duration_seconds:p95", "{{name}}")]),
    (
        "Locust latency p50 by name",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le, name) (rate(locust_request_duration_seconds_bucket[1m])))",
                "{{name}}",
            ),
        ],
    ),
    (
        "Schedule lag p99 (device cycle start minus plan)",
        "s",
        [
            ("fleetbed_generator:schedule_lag_seconds:p99", "p99"),
            ("sum(rate(fleetbed_generator_missed_slots_total[1m]))", "missed slots/s"),
        ],
    ),
    (
        "Slots given up (share of slots due)",
        "percentunit",
        [
            (
                "sum(rate(fleetbed_generator_missed_slots_total[1m])) / sum(rate(fleetbed_generator_slots_total[1m]))",
                "given up",
            ),
        ],
    ),
    ("Readings waiting on the devices", "short", [("sum(fleetbed_generator_backlog_readings)", "backlog")]),
    (
        "Last 10 s at the generator (exact percentiles)",
        "s",
        [
            ("max by (quantile) (fleetbed_generator_recent_request_seconds)", "requests p{{quantile}}"),
            ("max by (quantile) (fleetbed_generator_recent_schedule_lag_seconds)", "lag p{{quantile}}"),
        ],
    ),
]

DASHBOARDS = {
    "fleet": ("fleetbed: Fleet", "Devices, request rate, failures, latency, rows and ingest.", FLEET),
    "runtime": ("fleetbed: Runtime", "CPU, memory, GC collections and pauses, event-loop lag.", RUNTIME),
    "database": (
        "fleetbed: Database",
        "Pool, query and commit time, IO wait, PostgreSQL statistics, wait events, WAL, errors.",
        DATABASE,
    ),
    "generator": (
        "fleetbed: Generator",
        "Locust users, rps, failures, latency; the fleet's schedule lag, given-up slots and backlog.",
        GENERATOR,
    ),
}


def panel_json(index: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for n, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard_json(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": f"fleetbed-{uid}",
        "title": title,
        "description": description,
        "tags": ["fleetbed"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "panels": [panel_json(n, *panel) for n, panel in enumerate(panels)],
    }


def render(uid: str) -> str:
    title, description, panels = DASHBOARDS[uid]
    return json.dumps(dashboard_json(uid, title, description, panels), indent=2) + "\n"


def main() -> None:
    directory = Path(__file__).resolve().parent / "dashboards"
    for uid in DASHBOARDS:
        (directory / f"{uid}.json").write_text(render(uid))


if __name__ == "__main__":
    main()
