"""Storing readings: all-or-nothing, idempotent per (device, time), with the latest state and rollup kept in step.

One statement per batch: the readings go in with `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`,
and only the rows actually inserted feed `device_state` (newest by time wins, so late batches of older readings
never overwrite it) and the hourly rollup `water_temp_hourly`. Rows are written in key order so concurrent
batches take their row locks in the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from app.validation import Reading

# Rollup rows are split by writer so concurrent transactions do not queue on the current hour's row.
ROLLUP_SHARDS = 16

INSERT_READINGS = f"""
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::int4[], $4::int4[], $5::float8[], $6::float8[],
                         $7::float8[], $8::int2[])
        AS r(device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp, water_level)
), inserted AS (
    INSERT INTO measurement (device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp,
                             water_level)
    SELECT * FROM incoming ORDER BY device_id, time
    ON CONFLICT (device_id, time) DO NOTHING
    RETURNING *
), per_device AS (
    SELECT DISTINCT ON (device_id) *, count(*) OVER (PARTITION BY device_id) AS readings
    FROM inserted
    ORDER BY device_id, time DESC
), state AS (
    INSERT INTO device_state AS s (device_id, time, charge_now, charge_full, charge_rate, ambient_temp,
                                   water_temp, water_level, readings)
    SELECT device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp, water_level, readings
    FROM per_device ORDER BY device_id
    ON CONFLICT (device_id) DO UPDATE SET
        readings = s.readings + EXCLUDED.readings,
        updated_at = now(),
        time = greatest(s.time, EXCLUDED.time),
        charge_now = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.charge_now ELSE s.charge_now END,
        charge_full = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.charge_full ELSE s.charge_full END,
        charge_rate = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.charge_rate ELSE s.charge_rate END,
        ambient_temp = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.ambient_temp ELSE s.ambient_temp END,
        water_temp = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.water_temp ELSE s.water_temp END,
        water_level = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.water_level ELSE s.water_level END
    RETURNING 1
), rollup AS (
    INSERT INTO water_temp_hourly AS h (hour, shard, readings, water_temp_sum, water_temp_sumsq)
    SELECT date_trunc('hour', time, 'UTC'), pg_backend_pid() % {ROLLUP_SHARDS}, count(*), sum(water_temp),
           sum(water_temp * water_temp)
    FROM inserted GROUP BY 1 ORDER BY 1
    ON CONFLICT (hour, shard) DO UPDATE SET
        readings = h.readings + EXCLUDED.readings,
        water_temp_sum = h.water_temp_sum + EXCLUDED.water_temp_sum,
        water_temp_sumsq = h.water_temp_sumsq + EXCLUDED.water_temp_sumsq
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


@dataclass(frozen=True)
class StoreResult:
    received: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


def reading_columns(device_ids: Sequence[uuid.UUID], readings: Sequence[Reading]) -> list[list[object]]:
    """Column arrays for the insert statement, one entry per reading."""
    columns: list[list[object]] = [list(device_ids)]
    columns.extend(list(column) for column in zip(*readings, strict=True))
    return columns


async def store_readings(
    conn: asyncpg.Connection | asyncpg.Pool,
    device_ids: Sequence[uuid.UUID],
    readings: Sequence[Reading],
) -> StoreResult:
    """Store readings (device_ids[i] owns readings[i]) in one transaction; duplicates are skipped."""
    inserted: int = await conn.fetchval(INSERT_READINGS, *reading_columns(device_ids, readings))
    return StoreResult(received=len(readings), inserted=inserted)
