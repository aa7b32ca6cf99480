"""`fleetbed backfill`: fill the database with realistic history, fast, and keep every derived table exact.

Devices are written in blocks, one transaction per block: the devices, their readings (binary COPY where the
server supports it, batched inserts otherwise), their latest state, the hourly rollup and the fleet totals. An
interrupted backfill leaves whole devices only. On TimescaleDB the continuous aggregate is refreshed over the
backfilled range at the end.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from app.db import Connection
from app.db.measurements import store_batch
from app.history import COPY_COLUMNS, DeviceHistory, binary_copy, generate
from app.validation import Reading

log = logging.getLogger(__name__)

BACKFILL_SHARD = 0
_EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
_INSERT_CHUNK = 5000


@dataclass(frozen=True)
class BackfillPlan:
    devices: int
    readings_per_device: int
    interval: timedelta
    end: datetime
    seed: int | None = None
    block_readings: int = 500_000

    @property
    def total_readings(self) -> int:
        return self.devices * self.readings_per_device

    @property
    def devices_per_block(self) -> int:
        return max(1, min(self.devices, self.block_readings // max(self.readings_per_device, 1)))


def _datetimes(times_us: np.ndarray) -> list[datetime]:
    return [_EPOCH_2000 + timedelta(microseconds=int(t)) for t in times_us]


async def _register(conn: Connection, ids: list[uuid.UUID]) -> None:
    await conn.execute(
        "INSERT INTO device (id, metadata) SELECT unnest($1::uuid[]), $2::jsonb",
        ids,
        '{"source": "backfill"}',
    )


async def _write_derived(conn: Connection, ids: list[uuid.UUID], history: DeviceHistory) -> None:
    """device_state, water_temp_hourly and fleet_totals for a block written by COPY."""
    per_device = history.times_us.shape[1]
    last = (slice(None), -1)
    await conn.execute(
        """
        INSERT INTO device_state (device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp,
                                  water_level, readings)
        SELECT *, $9::bigint FROM unnest($1::uuid[], $2::timestamptz[], $3::int4[], $4::int4[], $5::float8[],
                                         $6::float8[], $7::float8[], $8::int2[])
        """,
        ids,
        _datetimes(history.times_us[last]),
        history.charge_now[last].tolist(),
        history.charge_full[last].tolist(),
        history.charge_rate[last].tolist(),
        history.ambient_temp[last].tolist(),
        history.water_temp[last].tolist(),
        history.water_level[last].tolist(),
        per_device,
    )
    hour_us = 3600 * 1_000_000
    hours = history.times_us.ravel() // hour_us
    temps = history.water_temp.ravel()
    unique_hours, index = np.unique(hours, return_inverse=True)
    counts = np.bincount(index)
    sums = np.bincount(index, weights=temps)
    squares = np.bincount(index, weights=temps * temps)
    await conn.execute(
        """
        INSERT INTO water_temp_hourly AS h (hour, shard, readings, water_temp_sum, water_temp_sumsq)
        SELECT hour, $5::int2, n, s, ss FROM unnest($1::timestamptz[], $2::int8[], $3::float8[], $4::float8[])
            AS r(hour, n, s, ss)
        ORDER BY hour
        ON CONFLICT (hour, shard) DO UPDATE SET
            readings = h.readings + EXCLUDED.readings,
            water_temp_sum = h.water_temp_sum + EXCLUDED.water_temp_sum,
            water_temp_sumsq = h.water_temp_sumsq + EXCLUDED.water_temp_sumsq
        """,
        _datetimes(unique_hours * hour_us),
        counts.tolist(),
        sums.tolist(),
        squares.tolist(),
        BACKFILL_SHARD,
    )
    await conn.execute(
        """
        INSERT INTO fleet_totals AS t (shard, devices, measurements, reporting_devices, total_battery_charge,
                                       total_water_volume)
        VALUES ($1, $2, $3, $2, $4, $5)
        ON CONFLICT (shard) DO UPDATE SET
            devices = t.devices + EXCLUDED.devices,
            measurements = t.measurements + EXCLUDED.measurements,
            reporting_devices = t.reporting_devices + EXCLUDED.reporting_devices,
            total_battery_charge = t.total_battery_charge + EXCLUDED.total_battery_charge,
            total_water_volume = t.total_water_volume + EXCLUDED.total_water_volume
        """,
        BACKFILL_SHARD,
        len(ids),
        history.count,
        int(history.charge_now[last].sum()),
        int(history.water_level[last].sum()),
    )


def _readings(history: DeviceHistory, ids: list[uuid.UUID]) -> tuple[list[uuid.UUID], list[Reading]]:
    per_device = history.times_us.shape[1]
    times = _datetimes(history.times_us.ravel())
    columns = zip(
        times,
        history.charge_now.ravel().tolist(),
        history.charge_full.ravel().tolist(),
        history.charge_rate.ravel().tolist(),
        history.ambient_temp.ravel().tolist(),
        history.water_temp.ravel().tolist(),
        history.water_level.ravel().tolist(),
        strict=True,
    )
    return [d for d in ids for _ in range(per_device)], [Reading(*values) for values in columns]


async def _write_block_by_copy(conn: Connection, ids: list[uuid.UUID], history: DeviceHistory) -> None:
    async with conn.transaction():
        await _register(conn, ids)
        await conn.copy_to_table(
            "measurement", source=io.BytesIO(binary_copy(history)), columns=list(COPY_COLUMNS), format="binary"
        )
        await _write_derived(conn, ids, history)


async def _write_block_by_insert(conn: Connection, ids: list[uuid.UUID], history: DeviceHistory) -> None:
    """For servers without COPY FROM STDIN (the PGlite TimescaleDB build): the service's own write path."""
    device_ids, readings = _readings(history, ids)
    async with conn.transaction():
        await _register(conn, ids)
        await conn.execute(
            "INSERT INTO fleet_totals AS t (shard, devices) VALUES ($1, $2) "
            "ON CONFLICT (shard) DO UPDATE SET devices = t.devices + EXCLUDED.devices",
            BACKFILL_SHARD,
            len(ids),
        )
        for start in range(0, len(readings), _INSERT_CHUNK):
            chunk = slice(start, start + _INSERT_CHUNK)
            await store_batch(conn, device_ids[chunk], readings[chunk], BACKFILL_SHARD)


async def _supports_copy(conn: Connection) -> bool:
    """PGlite's wire server refuses COPY FROM STDIN up front; real PostgreSQL servers take it."""
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMPORARY TABLE fleetbed_copy_probe (n int) ON COMMIT DROP")
            await conn.copy_to_table("fleetbed_copy_probe", source=io.BytesIO(b"1\n"), format="csv")
    except (asyncpg.FeatureNotSupportedError, asyncpg.PostgresError):
        return False
    return True


async def backfill(conn: Connection, plan: BackfillPlan, progress: Callable[[int], object]) -> int:
    """Write the plan's history; call `progress(readings_written)` after each block; return readings written."""
    rng = np.random.default_rng(plan.seed)
    use_copy = await _supports_copy(conn)
    if not use_copy:
        log.info("the server does not take COPY FROM STDIN; writing with batched inserts")
    written = 0
    remaining = plan.devices
    while remaining:
        block = min(remaining, plan.devices_per_block)
        history = generate(rng, block, plan.readings_per_device, plan.interval, plan.end)
        ids = [uuid.UUID(bytes=bytes(raw)) for raw in history.device_ids]
        await (_write_block_by_copy if use_copy else _write_block_by_insert)(conn, ids, history)
        written += history.count
        remaining -= block
        progress(history.count)
    await _refresh_continuous_aggregate(conn, plan)
    return written


async def _refresh_continuous_aggregate(conn: Connection, plan: BackfillPlan) -> None:
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"):
        return
    start = plan.end - plan.interval * (plan.readings_per_device + 1) - timedelta(hours=1)
    await conn.execute(
        "CALL refresh_continuous_aggregate('measurement_hourly', $1::timestamptz, $2::timestamptz)",
        start,
        plan.end + timedelta(hours=1),
    )
