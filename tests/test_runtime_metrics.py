"""Runtime and database metrics checked against known work: N requests, a forced collection, a blocked loop."""

from __future__ import annotations

import asyncio
import gc
import time

from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.keys import METRICS, POOL, SETTINGS
from app.metrics.runtime import EventLoopLagProbe, GCPauseRecorder
from app.metrics.statements import statement_name
from app.observability import OBSERVERS
from tests.support.devices import login, readings


def gc_pause_count(registry: CollectorRegistry, generation: int) -> float:
    return registry.get_sample_value("python_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


def test_forced_collection_is_timed_per_generation() -> None:
    registry = CollectorRegistry()
    recorder = GCPauseRecorder(registry)
    recorder.start()
    try:
        before = [gc_pause_count(registry, generation) for generation in range(3)]
        for _ in range(3):
            gc.collect()
        gc.collect(0)
    finally:
        recorder.stop()
    assert gc_pause_count(registry, 2) - before[2] == 3
    assert gc_pause_count(registry, 0) - before[0] >= 1
    assert (registry.get_sample_value("python_gc_pause_seconds_sum", {"generation": "2"}) or 0) > 0
    gc.collect()
    assert gc_pause_count(registry, 2) - before[2] == 3, "stop() removes the callback"


async def test_a_blocked_loop_shows_as_lag() -> None:
    registry = CollectorRegistry()
    probe = EventLoopLagProbe(registry, interval_s=0.01)
    probe.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 (a handler that blocks the loop is what this measures)
        await asyncio.sleep(0.05)
    finally:
        await probe.stop()
    assert (registry.get_sample_value("fleetbed_event_loop_lag_seconds_count") or 0) >= 3
    # The probe due during the block woke up about 0.3 s late, so it lands above the 0.25 s bucket.
    assert (registry.get_sample_value("fleetbed_event_loop_lag_seconds_bucket", {"le": "0.25"}) or 0) < (
        registry.get_sample_value("fleetbed_event_loop_lag_seconds_count") or 0
    )


async def test_service_exposes_requests_gc_pool_and_fleet_size(pg_client: TestClient) -> None:
    app = pg_client.app
    registry = app[METRICS].registry
    observers = app[OBSERVERS]
    requests = 7
    for _ in range(requests):
        assert (await pg_client.get("/healthz")).status == 200
    gc.collect()
    devices = [await login(pg_client) for _ in range(3)]
    for device in devices:
        response = await pg_client.post("/measurement", json=readings(4), headers=device.headers)
        assert response.status == 201, await response.text()
    await observers.fleet_size.refresh(app[POOL])

    assert (
        registry.get_sample_value(
            "fleetbed_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"}
        )
        == requests
    )
    assert gc_pause_count(registry, 2) >= 1
    assert registry.get_sample_value("fleetbed_measurement_rows") == 12
    assert registry.get_sample_value("fleetbed_active_devices") == 3
    assert (registry.get_sample_value("fleetbed_db_query_duration_seconds_count", {"query": "fleet_size"}) or 0) >= 1
    assert (registry.get_sample_value("fleetbed_db_pool_acquire_duration_seconds_count") or 0) >= 3
    assert registry.get_sample_value("fleetbed_db_pool_waiting_acquires") == 0
    assert registry.get_sample_value("fleetbed_db_pool_max_connections") == 4
    size = registry.get_sample_value("fleetbed_db_pool_size_connections") or 0
    assert 1 <= size <= 4
    # Each ingest writer keeps its connection between batches; nothing else holds one.
    assert (registry.get_sample_value("fleetbed_db_pool_in_use_connections") or 0) <= pg_client.app[
        SETTINGS
    ].ingest_writers

    def statements(name: str) -> float:
        return registry.get_sample_value("fleetbed_db_statement_duration_seconds_count", {"statement": name}) or 0

    # Three batches (one per request, or fewer with group commit), each one statement (autocommitted on
    # PostgreSQL 18), timed end to end by the ingest histogram.
    assert 1 <= statements("insert:measurement") <= 3
    assert registry.get_sample_value("fleetbed_ingest_commit_duration_seconds_count") == statements(
        "insert:measurement"
    )
    assert statements("select:fleet_totals") >= 1

    text = await (await pg_client.get("/metrics")).text()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "python_gc_pause_seconds",
        "fleetbed_event_loop_lag_seconds",
        "fleetbed_db_pool_in_use_connections",
        "process_resident_memory_bytes",
        "process_open_fds",
    } <= families


async def test_pool_counts_waiters_and_connections_in_use(pg_client: TestClient) -> None:
    app = pg_client.app
    registry = app[METRICS].registry
    pool = app[POOL]
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        assert registry.get_sample_value("fleetbed_db_pool_in_use_connections") == pool.get_max_size()
        waiter = asyncio.create_task(pool.fetchval("SELECT 1"))
        await asyncio.sleep(0.05)
        assert registry.get_sample_value("fleetbed_db_pool_waiting_acquires") == 1
        await pool.release(held.pop())
        assert await waiter == 1
        assert registry.get_sample_value("fleetbed_db_pool_waiting_acquires") == 0
        slowest = registry.get_sample_value("fleetbed_db_pool_acquire_duration_seconds_bucket", {"le": "0.025"})
        count = registry.get_sample_value("fleetbed_db_pool_acquire_duration_seconds_count")
        assert slowest is not None
        assert count is not None
        assert slowest < count, "the waiter waited about 50 ms"
    finally:
        for connection in held:
            await pool.release(connection)


def test_statements_are_named_by_verb_and_table() -> None:
    assert statement_name("INSERT INTO device (id) VALUES ($1) ON CONFLICT DO NOTHING") == "insert:device"
    assert statement_name("WITH incoming AS (SELECT * FROM unnest($1::uuid[])) INSERT INTO measurement SELECT 1") == (
        "insert:measurement"
    )
    assert statement_name("-- totals\nSELECT sum(devices) FROM fleet_totals") == "select:fleet_totals"
    assert statement_name("UPDATE ONLY command SET fill = $1") == "update:command"
    assert statement_name("COMMIT;") == "commit"
    assert statement_name("SELECT 1") == "select"
