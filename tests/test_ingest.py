"""Group commit: concurrent requests share transactions, each is answered only after its batch commits."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from app.db.stats import fleet_stats, fleet_stats_by_full_scan
from app.keys import INGEST, METRICS
from app.server import create_app
from tests.conftest import AiohttpClient, make_settings
from tests.support.db import scalar
from tests.support.devices import BASE_TIME, login, reading, readings
from tests.test_stats import assert_same_stats


@pytest.fixture
def pg_url(each_pg_url: str) -> str:
    """Every test here runs on the embedded PostgreSQL 18 and on PostgreSQL 15."""
    return each_pg_url


async def test_concurrent_requests_are_committed_together(pg_client: TestClient, pg_url: str) -> None:
    devices = [await login(pg_client) for _ in range(40)]

    async def post(device_index: int, n: int) -> int:
        device = devices[device_index]
        response = await pg_client.post(
            "/measurement", json=reading(BASE_TIME + timedelta(seconds=n)), headers=device.headers
        )
        return response.status

    statuses = await asyncio.gather(*(post(i % 40, i) for i in range(400)))
    assert statuses == [201] * 400
    assert await scalar(pg_url, "SELECT count(*) FROM measurement") == 400
    registry = pg_client.app[METRICS].registry
    transactions = registry.get_sample_value("fleetbed_ingest_batch_readings_count")
    assert registry.get_sample_value("fleetbed_ingest_batch_readings_sum") == 400
    assert transactions is not None
    assert transactions < 400, "concurrent requests share transactions"


async def test_the_same_reading_in_concurrent_requests_is_stored_once(pg_client: TestClient, pg_url: str) -> None:
    device = await login(pg_client)
    same = reading(BASE_TIME)
    responses = await asyncio.gather(
        *(pg_client.post("/measurement", json=same, headers=device.headers) for _ in range(20))
    )
    bodies = [await r.json() for r in responses]
    assert all(r.status == 201 for r in responses)
    assert sorted(b["duplicates"] for b in bodies) == [0] + [1] * 19
    assert await scalar(pg_url, "SELECT count(*) FROM measurement") == 1
    stats = await (await pg_client.get("/stats", headers=device.headers)).json()
    assert (stats["measurements"], stats["reporting_devices"]) == (1, 1)


async def test_acknowledgement_waits_for_the_commit_and_a_full_queue_sheds_load(
    pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    settings = make_settings(pg_url, tmp_path, ingest_writers=1, ingest_queue_readings=1000)
    client = await aiohttp_client(create_app(settings))
    devices = [await login(client) for _ in range(3)]
    blocker = await asyncpg.connect(pg_url)
    try:
        # Hold the totals rows: every ingest transaction now waits for this one.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE fleet_totals IN EXCLUSIVE MODE")
        first = asyncio.ensure_future(client.post("/measurement", json=readings(600), headers=devices[0].headers))
        await asyncio.sleep(0.3)
        queued = asyncio.ensure_future(client.post("/measurement", json=readings(900), headers=devices[1].headers))
        await asyncio.sleep(0.3)
        assert not first.done(), "no acknowledgement before the commit"
        assert not queued.done()
        assert client.app[INGEST].queued_readings == 900

        shed = await client.post("/measurement", json=readings(200), headers=devices[2].headers)
        assert shed.status == 503
        assert shed.headers["Retry-After"] == "1"
        assert (await shed.json())["error"] == "unavailable"
        await tx.rollback()
    finally:
        await blocker.close()
    assert (await first).status == 201
    assert (await queued).status == 201
    assert await scalar(pg_url, "SELECT count(*) FROM measurement") == 1500
    rejected = client.app[METRICS].registry.get_sample_value("fleetbed_ingest_rejected_readings_total")
    assert rejected == 200


async def test_stats_stay_exact_under_concurrent_writers(pg_client: TestClient, pg_url: str) -> None:
    rng = random.Random(11)
    devices = [await login(pg_client) for _ in range(12)]

    async def device_session(index: int) -> None:
        device = devices[index]
        for _ in range(6):
            start = BASE_TIME - timedelta(hours=rng.randrange(10), minutes=rng.randrange(60))
            batch = [
                reading(
                    start + timedelta(seconds=13 * i), charge_now=rng.randrange(1001), water_level=rng.randrange(101)
                )
                for i in range(rng.randrange(1, 30))
            ]
            response = await pg_client.post("/measurement", json=batch, headers=device.headers)
            assert response.status == 201

    # Each device posts from two concurrent sessions: its batches race each other in the writers.
    await asyncio.gather(*(device_session(i % 12) for i in range(24)))
    conn = await asyncpg.connect(pg_url)
    try:
        assert_same_stats((await fleet_stats(conn, 24)).as_json(), (await fleet_stats_by_full_scan(conn, 24)).as_json())
    finally:
        await conn.close()


async def test_totals_stay_exact_when_two_workers_write_the_same_devices(
    pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    workers = [await aiohttp_client(create_app(make_settings(pg_url, tmp_path))) for _ in range(2)]
    devices = [await login(workers[0]) for _ in range(5)]
    rng = random.Random(5)

    async def post(n: int) -> None:
        device = devices[n % 5]
        worker = workers[rng.randrange(2)]
        start = BASE_TIME + timedelta(minutes=rng.randrange(600))
        batch = [reading(start + timedelta(seconds=i), charge_now=rng.randrange(1001)) for i in range(5)]
        assert (await worker.post("/measurement", json=batch, headers=device.headers)).status == 201

    await asyncio.gather(*(post(n) for n in range(120)))
    conn = await asyncpg.connect(pg_url)
    try:
        assert_same_stats((await fleet_stats(conn, 24)).as_json(), (await fleet_stats_by_full_scan(conn, 24)).as_json())
    finally:
        await conn.close()
