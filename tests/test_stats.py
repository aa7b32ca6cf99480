"""GET /stats from maintained state gives the same answers as a full scan of the readings."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from app.db.stats import fleet_stats, fleet_stats_by_full_scan
from app.settings import Settings
from tests.support.db import close, fetch
from tests.support.devices import BASE_TIME, Device, login, reading, readings


@pytest.fixture
def backend_url(each_backend_url: str) -> str:
    """Every test here runs on PostgreSQL 18, PostgreSQL 15 and TimescaleDB."""
    return each_backend_url


async def refresh_hourly_aggregate_if_timescaledb(url: str) -> None:
    """Materialize TimescaleDB's continuous aggregate (what its policy does every 5 minutes)."""
    conn = await asyncpg.connect(url, ssl=False)
    try:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"):
            await conn.execute("CALL refresh_continuous_aggregate('measurement_hourly', NULL, NULL)")
    finally:
        await close(conn)


async def test_older_readings_arriving_later_do_not_overwrite_the_latest_state(client: TestClient) -> None:
    device = await login(client)
    newest = reading(BASE_TIME + timedelta(hours=2), charge_now=900, water_level=90)
    await client.post("/measurement", json=newest, headers=device.headers)
    backlog = [reading(BASE_TIME + timedelta(minutes=i), charge_now=100 + i, water_level=10) for i in range(30)]
    response = await client.post("/measurement", json=backlog, headers=device.headers)
    assert await response.json() == {"accepted": 30, "duplicates": 0}
    stats = await (await client.get("/stats", headers=device.headers)).json()
    assert stats["measurements"] == 31
    assert (stats["total_battery_charge"], stats["total_water_volume"]) == (900, 90)


async def test_a_newer_reading_replaces_the_latest_state(client: TestClient) -> None:
    device = await login(client)
    await client.post("/measurement", json=reading(BASE_TIME, charge_now=300), headers=device.headers)
    await client.post(
        "/measurement", json=reading(BASE_TIME + timedelta(seconds=1), charge_now=301), headers=device.headers
    )
    stats = await (await client.get("/stats", headers=device.headers)).json()
    assert stats["total_battery_charge"] == 301


def assert_same_stats(maintained: dict[str, object], scanned: dict[str, object]) -> None:
    for key in ("measurements", "devices", "reporting_devices", "total_battery_charge", "total_water_volume"):
        assert maintained[key] == scanned[key], key
    hours_a = maintained["mean_water_temp_by_hour"]
    hours_b = scanned["mean_water_temp_by_hour"]
    assert isinstance(hours_a, list)
    assert isinstance(hours_b, list)
    assert [h["hour"] for h in hours_a] == [h["hour"] for h in hours_b]
    for a, b in zip(hours_a, hours_b, strict=True):
        assert a["readings"] == b["readings"]
        assert math.isclose(a["mean"], b["mean"], rel_tol=1e-9)
        if b["stddev"] is None:
            assert a["stddev"] is None
        else:
            assert math.isclose(a["stddev"], b["stddev"], rel_tol=1e-6, abs_tol=1e-9)


async def test_maintained_stats_equal_a_full_scan(client: TestClient, settings: Settings) -> None:
    rng = random.Random(7)
    devices: list[Device] = [await login(client) for _ in range(6)]
    url = settings.database_url or ""

    async def post_random_batches(rounds: int, hours_back: int) -> None:
        for _ in range(rounds):
            device = rng.choice(devices)
            start = BASE_TIME - timedelta(hours=rng.randrange(hours_back), seconds=rng.randrange(3600))
            batch = [
                reading(
                    start + timedelta(seconds=17 * i),
                    charge_now=rng.randrange(0, 1001),
                    water_level=rng.randrange(0, 101),
                    water_temp=round(rng.uniform(4.0, 99.5), 3),
                )
                for i in range(rng.randrange(1, 40))
            ]
            if rng.random() < 0.3:
                batch += batch[: rng.randrange(1, len(batch) + 1)]  # retried readings inside the batch
            response = await client.post("/measurement", json=batch, headers=device.headers)
            assert response.status == 201

    async def compare() -> None:
        conn = await asyncpg.connect(url, ssl=False)
        try:
            maintained = (await fleet_stats(conn, hours=48)).as_json()
            scanned = (await fleet_stats_by_full_scan(conn, hours=48)).as_json()
        finally:
            await close(conn)
        assert_same_stats(maintained, scanned)
        served = await (await client.get("/stats", params={"hours": "48"}, headers=devices[0].headers)).json()
        assert_same_stats(served, scanned)

    await post_random_batches(rounds=25, hours_back=30)
    await compare()
    await refresh_hourly_aggregate_if_timescaledb(url)
    await post_random_batches(rounds=15, hours_back=30)  # older hours again: late readings count at once
    await compare()


async def test_the_hourly_analysis_view_agrees_with_the_rollup(client: TestClient, settings: Settings) -> None:
    url = settings.database_url or ""
    device = await login(client)
    late_and_current = readings(90, start=BASE_TIME, step=timedelta(minutes=3))
    for chunk in (late_and_current[60:], late_and_current[:60]):
        assert (await client.post("/measurement", json=chunk, headers=device.headers)).status == 201
    await refresh_hourly_aggregate_if_timescaledb(url)
    view = await fetch(
        url, "SELECT hour, readings, water_temp_mean, water_temp_stddev FROM measurement_hourly ORDER BY hour"
    )
    stats = await (await client.get("/stats", params={"hours": "744"}, headers=device.headers)).json()
    served = stats["mean_water_temp_by_hour"]
    assert [row["hour"].isoformat() for row in view] == [hour["hour"] for hour in served]
    for row, hour in zip(view, served, strict=True):
        assert row["readings"] == hour["readings"]
        assert math.isclose(row["water_temp_mean"], hour["mean"], rel_tol=1e-9)
        assert math.isclose(row["water_temp_stddev"], hour["stddev"], rel_tol=1e-6)


async def test_stats_on_an_empty_fleet(client: TestClient) -> None:
    device = await login(client)
    stats = await (await client.get("/stats", headers=device.headers)).json()
    assert stats["measurements"] == 0
    assert stats["devices"] == 1
    assert stats["reporting_devices"] == 0
    assert stats["mean_water_temp_by_hour"] == []


async def test_hours_limits_the_hourly_series_to_the_newest(client: TestClient) -> None:
    device = await login(client)
    batch = [reading(BASE_TIME + timedelta(hours=h), water_temp=10.0 + h) for h in range(6)]
    await client.post("/measurement", json=batch, headers=device.headers)
    stats = await (await client.get("/stats", params={"hours": "2"}, headers=device.headers)).json()
    series = stats["mean_water_temp_by_hour"]
    assert [h["mean"] for h in series] == [14.0, 15.0]
    assert series[-1]["hour"] == (BASE_TIME + timedelta(hours=5)).isoformat()
