"""`fleetbed backfill`: fill the database with realistic history, fast, and keep every derived table exact.

Devices are written in blocks, one transaction per block: the devices, their readings (binary COPY where the
server supports it, batched inserts otherwise), their latest state, the hourly rollup and the fleet totals. An
interrupted backfill leaves whole devices only. On TimescaleDB the continuous aggregate is refreshed over the
backfilled range at the end.

The history comes from `app.backfill.history` (numpy); the SQL that writes it lives in `app.db.backfill`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from app.backfill.history import COPY_COLUMNS, DeviceHistory, binary_copy, generate
from app.db import Connection
from app.db.backfill import (
    add_devices_to_totals,
    add_to_hourly_rollup,
    add_to_totals,
    copy_readings,
    insert_latest_state,
    refresh_continuous_aggregate,
    register_devices,
    supports_copy,
)
from app.db.measurements import store_batch
from app.db.readings import Reading

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


async def _write_derived(conn: Connection, ids: list[uuid.UUID], history: DeviceHistory) -> None:
    """device_state, water_temp_hourly and fleet_totals for a block written by COPY."""
    per_device = history.times_us.shape[1]
    last = (slice(None), -1)
    latest = [
        _datetimes(history.times_us[last]),
        history.charge_now[last].tolist(),
        history.charge_full[last].tolist(),
        history.charge_rate[last].tolist(),
        history.ambient_temp[last].tolist(),
        history.water_temp[last].tolist(),
        history.water_level[last].tolist(),
    ]
    await insert_latest_state(conn, ids, latest, per_device)
    hour_us = 3600 * 1_000_000
    hours = history.times_us.ravel() // hour_us
    temps = history.water_temp.ravel()
    unique_hours, index = np.unique(hours, return_inverse=True)
    counts = np.bincount(index)
    sums = np.bincount(index, weights=temps)
    squares = np.bincount(index, weights=temps * temps)
    await add_to_hourly_rollup(
        conn, _datetimes(unique_hours * hour_us), counts.tolist(), sums.tolist(), squares.tolist(), BACKFILL_SHARD
    )
    await add_to_totals(
        conn,
        BACKFILL_SHARD,
        devices=len(ids),
        measurements=history.count,
        battery_charge=int(history.charge_now[last].sum()),
        water_volume=int(history.water_level[last].sum()),
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
        await register_devices(conn, ids)
        await copy_readings(conn, binary_copy(history), COPY_COLUMNS)
        await _write_derived(conn, ids, history)


async def _write_block_by_insert(conn: Connection, ids: list[uuid.UUID], history: DeviceHistory) -> None:
    """For servers without COPY FROM STDIN (the PGlite TimescaleDB build): the service's own write path."""
    device_ids, readings = _readings(history, ids)
    async with conn.transaction():
        await register_devices(conn, ids)
        await add_devices_to_totals(conn, BACKFILL_SHARD, len(ids))
        for start in range(0, len(readings), _INSERT_CHUNK):
            chunk = slice(start, start + _INSERT_CHUNK)
            await store_batch(conn, device_ids[chunk], readings[chunk], BACKFILL_SHARD)


async def backfill(conn: Connection, plan: BackfillPlan, progress: Callable[[int], object]) -> int:
    """Write the plan's history; call `progress(readings_written)` after each block; return readings written."""
    rng = np.random.default_rng(plan.seed)
    use_copy = await supports_copy(conn)
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
    start = plan.end - plan.interval * (plan.readings_per_device + 1) - timedelta(hours=1)
    await refresh_continuous_aggregate(conn, start, plan.end + timedelta(hours=1))
