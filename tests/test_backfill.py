"""`fleetbed backfill` writes realistic, valid history fast and keeps state, rollup and totals exact."""

from __future__ import annotations

import subprocess
import tempfile
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from app.backfill import BackfillPlan, backfill
from app.backfill.history import generate
from app.db.stats import fleet_stats, fleet_stats_by_full_scan
from app.validation import parse_measurements
from tests.support.db import close, scalar
from tests.support.devices import BASE_TIME
from tests.support.processes import fleetbed_command
from tests.test_stats import assert_same_stats

END = BASE_TIME


def test_generated_readings_pass_the_service_validation() -> None:
    history = generate(np.random.default_rng(3), devices=50, readings=400, interval=timedelta(seconds=30), end=END)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    documents = [
        {
            "time": (epoch + timedelta(microseconds=int(history.times_us[d, r]))).isoformat(),
            "charge_now": int(history.charge_now[d, r]),
            "charge_full": int(history.charge_full[d, r]),
            "charge_rate": float(history.charge_rate[d, r]),
            "ambient_temp": float(history.ambient_temp[d, r]),
            "water_temp": float(history.water_temp[d, r]),
            "water_level": int(history.water_level[d, r]),
        }
        for d in range(50)
        for r in range(0, 400, 7)
    ]
    assert len(parse_measurements(documents, max_batch=100_000, now=END)) == len(documents)
    assert np.all(np.diff(history.times_us, axis=1) == 30_000_000), "readings are evenly spaced per device"


async def test_backfill_keeps_derived_state_exact(backend_url: str) -> None:
    conn = await asyncpg.connect(backend_url, ssl=False)
    try:
        plan = BackfillPlan(devices=30, readings_per_device=120, interval=timedelta(seconds=30), end=END, seed=1,
                            block_readings=1000)  # fmt: skip
        progress: list[int] = []
        written = await backfill(conn, plan, progress.append)
        assert written == sum(progress) == 3600
        assert len(progress) > 1, "progress is reported block by block"
        assert await conn.fetchval("SELECT count(*) FROM measurement") == 3600
        assert_same_stats((await fleet_stats(conn, 48)).as_json(), (await fleet_stats_by_full_scan(conn, 48)).as_json())
    finally:
        await close(conn)


def test_backfill_command_reports_its_rate(pg_url: str) -> None:
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": tempfile.mkdtemp(), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [*fleetbed_command(), "backfill", "--devices", "200", "--readings", "500", "--interval", "1m"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "backfilled 100,000 readings for 200 devices" in result.stdout
    assert "readings/s" in result.stdout
    assert "backfill" in result.stderr, "a progress bar is drawn on stderr"


@pytest.mark.parametrize("bad", ["--interval=0s", "--interval=soon", "--devices=0"])
def test_backfill_rejects_bad_arguments(bad: str) -> None:
    result = subprocess.run(
        [*fleetbed_command(), "backfill", "--devices", "1", "--readings", "1", bad],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "error:" in result.stderr


async def test_backfill_rows_are_visible_in_the_api_totals(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await backfill(conn, BackfillPlan(10, 10, timedelta(minutes=1), END, seed=2), lambda n: None)
    finally:
        await conn.close()
    assert await scalar(pg_url, "SELECT sum(devices) FROM fleet_totals") == 10
    assert await scalar(pg_url, "SELECT sum(readings) FROM device_state") == 100
