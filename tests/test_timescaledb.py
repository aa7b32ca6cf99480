"""The TimescaleDB layout: hypertables, compression, the continuous aggregate, and the same answers as PostgreSQL.

The API tests elsewhere run on TimescaleDB too (the `backend_url` fixture); these check what only exists there.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.keys import LAYOUT
from app.server import create_app
from app.settings import Settings
from tests.conftest import AiohttpClient, make_settings
from tests.support.db import fetch, scalar
from tests.support.devices import BASE_TIME, login, reading, readings

pytestmark = pytest.mark.timescaledb


async def test_measurement_and_run_snapshot_are_hypertables(ts_url: str) -> None:
    rows = await fetch(
        ts_url,
        "SELECT hypertable_name, column_name, time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_name IN ('measurement', 'run_snapshot') "
        "ORDER BY hypertable_name",
    )
    assert [(r["hypertable_name"], r["column_name"], r["time_interval"]) for r in rows] == [
        ("measurement", "time", timedelta(days=1)),
        ("run_snapshot", "time", timedelta(days=7)),
    ]


async def test_measurement_is_compressed_by_device_after_a_week(ts_url: str) -> None:
    settings = await fetch(
        ts_url,
        "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc "
        "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'measurement' ORDER BY attname",
    )
    by_column = {r["attname"]: r for r in settings}
    assert by_column["device_id"]["segmentby_column_index"] == 1
    assert by_column["time"]["orderby_column_index"] == 1
    assert by_column["time"]["orderby_asc"] is False
    policy = await scalar(
        ts_url,
        "SELECT config->>'compress_after' FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_name = 'measurement'",
    )
    assert policy == "7 days"


async def test_hourly_statistics_are_a_real_time_continuous_aggregate(ts_url: str) -> None:
    rows = await fetch(
        ts_url,
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates",
    )
    assert [(r["view_name"], r["materialized_only"]) for r in rows] == [("measurement_hourly", False)]
    refresh = await scalar(
        ts_url,
        "SELECT schedule_interval FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_refresh_continuous_aggregate'",
    )
    assert refresh == timedelta(minutes=5)


async def test_the_service_knows_it_runs_on_timescaledb(ts_url: str, client: TestClient) -> None:
    layout = client.app[LAYOUT]
    assert layout.timescaledb_version is not None
    assert layout.timescaledb_version.startswith("2.")
    assert layout.migrated


@pytest.fixture(params=["timescaledb"])
def backend_url(request: pytest.FixtureRequest) -> str:
    """In this module the app runs on TimescaleDB only."""
    url: str = request.getfixturevalue("ts_url")
    return url


async def test_compressed_chunks_still_take_retries_and_late_readings(
    settings: Settings, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    url = settings.database_url or ""
    # A month-old backlog: beyond the default age limit, which a fleet with long offline spells raises.
    client = await aiohttp_client(create_app(make_settings(url, tmp_path, max_reading_age_s=60 * 86400)))
    device = await login(client)
    old = BASE_TIME - timedelta(days=30)
    backlog = readings(20, start=old)
    assert (await client.post("/measurement", json=backlog, headers=device.headers)).status == 201
    assert (await client.post("/measurement", json=reading(BASE_TIME), headers=device.headers)).status == 201
    chunks = await scalar(url, "SELECT count(*) FROM show_chunks('measurement')")
    assert chunks == 2, "a month apart: two daily chunks"
    compressed = await fetch(
        url, "SELECT compress_chunk(c) FROM show_chunks('measurement', older_than => INTERVAL '7 days') c"
    )
    assert len(compressed) == 1

    retry = await client.post("/measurement", json=backlog[:5], headers=device.headers)
    assert await retry.json() == {"accepted": 5, "duplicates": 5}, "duplicates are detected in compressed chunks"
    late = reading(old + timedelta(hours=3))
    assert await (await client.post("/measurement", json=late, headers=device.headers)).json() == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert await scalar(url, "SELECT count(*) FROM measurement") == 22
    stats = await (await client.get("/stats", params={"hours": "744"}, headers=device.headers)).json()
    assert stats["measurements"] == 22
    assert sum(hour["readings"] for hour in stats["mean_water_temp_by_hour"]) == 22
