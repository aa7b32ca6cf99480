"""The service's Prometheus metrics, held by one object that owns its registry.

Labels stay bounded: routes are templates (`/devices/{id}/command`), never device ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from app.database_errors import DatabaseFaults
from app.metrics.requests import RequestMetrics

# Request latencies from sub-millisecond (cached reads) to the 30 s a device waits before giving up.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class ServiceMetrics:
    """All metrics of one service instance; two apps in one process never share a registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = RequestMetrics(LATENCY_BUCKETS_S)
        self.registry.register(self.requests)
        self.readings_received = Counter(
            "fleetbed_readings_received_total",
            "Valid readings received in POST /measurement (duplicates included).",
            registry=self.registry,
        )
        self.readings_stored = Counter(
            "fleetbed_readings_stored_total",
            "Readings newly stored (a retried duplicate is acknowledged but not stored again).",
            registry=self.registry,
        )
        self.ingest_batch_size = Histogram(
            "fleetbed_ingest_batch_readings",
            "Readings written per database transaction (group commit: grows with load).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.ingest_commit_duration = Histogram(
            "fleetbed_ingest_commit_duration_seconds",
            "Time to write and commit one ingest batch, pool wait and retries included.",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.ingest_queue_readings = Gauge(
            "fleetbed_ingest_queue_readings",
            "Readings waiting for an ingest writer.",
            registry=self.registry,
        )
        self.ingest_rejected = Counter(
            "fleetbed_ingest_rejected_readings_total",
            "Readings refused with 503 because the ingest queue was full.",
            registry=self.registry,
        )
        self.query_duration = Histogram(
            "fleetbed_db_query_duration_seconds",
            "Database round trips by query name, pool wait included.",
            ["query"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.command_cache_lookups = Counter(
            "fleetbed_command_cache_lookups_total",
            "GET /command lookups by whether the in-memory cache answered (hit) or the database did (miss).",
            ["result"],
            registry=self.registry,
        )
        self.command_cache_hits = self.command_cache_lookups.labels("hit")
        self.command_cache_misses = self.command_cache_lookups.labels("miss")
        self.logins = Counter(
            "fleetbed_logins_total",
            "Successful logins, by whether the device was new.",
            ["new_device"],
            registry=self.registry,
        )
        self.database_faults = DatabaseFaults(self.registry)
