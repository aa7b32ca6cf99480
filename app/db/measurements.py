"""Storing readings: all-or-nothing, idempotent per (device, time), with state, rollup and totals kept in step.

A batch (readings of one or many devices) is one statement that inserts the readings (`INSERT ... SELECT FROM
unnest(...) ON CONFLICT DO NOTHING`), and from the rows actually inserted updates `device_state` (newest by
time wins: late batches of older readings never overwrite it), the hourly rollup `water_temp_hourly`, and
`fleet_totals` by the change in each device's latest state. It answers how many rows were new and which input
positions were duplicates.

The change of state comes from the upsert's `RETURNING old.*` on PostgreSQL 18: exact against concurrent
writers, in one autocommitted statement. Older servers cannot return the old row, so the statement looks it up
first, inside a transaction that has locked the batch's device rows (`FOR NO KEY UPDATE`, in id order) so no
other writer, in this process or another, changes those devices' state until the commit.

Rows are written in key order so concurrent batches take their row locks in the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from app.db import Connection
from app.db.derived import fleet_totals_upsert, hourly_rollup_upsert
from app.db.readings import Reading

LOCK_DEVICES = "SELECT 1 FROM device WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE"

_INCOMING_AND_INSERTED = """
WITH incoming AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::int4[], $4::int4[], $5::float8[], $6::float8[],
                         $7::float8[], $8::int2[]) WITH ORDINALITY
        AS r(device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp, water_level, ord)
), inserted AS (
    INSERT INTO measurement (device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp,
                             water_level)
    SELECT device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp, water_level
    FROM incoming ORDER BY device_id, time
    ON CONFLICT (device_id, time) DO NOTHING
    RETURNING *
), per_device AS (
    SELECT DISTINCT ON (device_id) *, count(*) OVER (PARTITION BY device_id) AS readings
    FROM inserted
    ORDER BY device_id, time DESC
)"""

_UPSERT_STATE = """
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
        water_level = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.water_level ELSE s.water_level END"""

# How each device's latest state changed, as (readings, first_reading, charge_delta, level_delta) per device.
# PostgreSQL 18 returns the old row from the upsert itself; older servers look it up before the upsert (the
# statement's snapshot precedes its own writes, and the device rows are locked, so it is current).
_CHANGE_FROM_RETURNING_OLD = f""", change AS (
{_UPSERT_STATE}
    RETURNING new.readings - coalesce(old.readings, 0) AS readings, old.device_id IS NULL AS first_reading,
              new.charge_now - coalesce(old.charge_now, 0) AS charge_delta,
              new.water_level - coalesce(old.water_level, 0) AS level_delta
)"""

_CHANGE_FROM_LOOKUP = f""", change AS (
    -- LATERAL: one primary-key lookup per device in the batch, never a scan of all devices.
    SELECT p.readings, s.time IS NULL AS first_reading,
           CASE WHEN s.time IS NULL OR p.time > s.time THEN p.charge_now - coalesce(s.charge_now, 0) ELSE 0 END
               AS charge_delta,
           CASE WHEN s.time IS NULL OR p.time > s.time THEN p.water_level - coalesce(s.water_level, 0) ELSE 0 END
               AS level_delta
    FROM per_device p
    LEFT JOIN LATERAL (
        SELECT ds.time, ds.charge_now, ds.water_level FROM device_state ds WHERE ds.device_id = p.device_id LIMIT 1
    ) s ON true
), state AS (
{_UPSERT_STATE}
    RETURNING 1
)"""

# PostgreSQL raises on float underflow: squares of values this small count as the zero they are.
_INSERTED_BY_HOUR = """SELECT date_trunc('hour', time, 'UTC'), $9::int2, count(*), sum(water_temp),
           sum(CASE WHEN abs(water_temp) < 1e-150 THEN 0 ELSE water_temp * water_temp END)
    FROM inserted GROUP BY 1 ORDER BY 1"""
_CHANGE_OF_TOTALS = """SELECT $9::int2, 0, sum(readings), count(*) FILTER (WHERE first_reading), sum(charge_delta),
           sum(level_delta)
    FROM change HAVING count(*) > 0"""

_ROLLUP_TOTALS_AND_ANSWER = f""", rollup AS (
    {hourly_rollup_upsert(_INSERTED_BY_HOUR)}
    RETURNING 1
), totals AS (
    {fleet_totals_upsert(_CHANGE_OF_TOTALS)}
    RETURNING 1
), stored AS (
    SELECT count(*) AS n FROM inserted
)
SELECT stored.n,
       -- Positions (1-based) of readings not stored: already in the table, or repeated earlier in the batch.
       CASE WHEN stored.n < $10::int THEN (
           SELECT array_agg(ord ORDER BY ord) FROM (
               SELECT ord, device_id, time,
                      row_number() OVER (PARTITION BY device_id, time ORDER BY ord) AS occurrence
               FROM incoming
           ) x
           WHERE occurrence > 1
              OR NOT EXISTS (SELECT 1 FROM inserted i WHERE i.device_id = x.device_id AND i.time = x.time)
       ) END AS duplicate_positions
FROM stored
"""

INSERT_READINGS_RETURNING_OLD = _INCOMING_AND_INSERTED + _CHANGE_FROM_RETURNING_OLD + _ROLLUP_TOTALS_AND_ANSWER
INSERT_READINGS_WITH_LOOKUP = _INCOMING_AND_INSERTED + _CHANGE_FROM_LOOKUP + _ROLLUP_TOTALS_AND_ANSWER


@dataclass(frozen=True)
class StoreResult:
    received: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch stored: the count of new rows, and the 0-based positions of readings that were not new."""

    inserted: int
    duplicate_positions: frozenset[int]


def reading_columns(device_ids: Sequence[uuid.UUID], readings: Sequence[Reading]) -> list[list[object]]:
    """Column arrays for the insert statement, one entry per reading."""
    columns: list[list[object]] = [list(device_ids)]
    columns.extend(list(column) for column in zip(*readings, strict=True))
    return columns


async def store_batch(
    conn: Connection, device_ids: Sequence[uuid.UUID], readings: Sequence[Reading], shard: int
) -> BatchOutcome:
    """Store readings (device_ids[i] owns readings[i]) in one transaction; repeated (device, time) are skipped.

    `shard` picks the rollup and totals rows this writer updates; concurrent writers should use different ones.
    """
    arguments = (*reading_columns(device_ids, readings), shard, len(readings))
    if conn.get_server_version().major >= 18:
        # One statement is its own transaction, and the upsert returns the very row version it replaced, so
        # the totals stay exact against concurrent writers without locking anything first.
        row = await conn.fetchrow(INSERT_READINGS_RETURNING_OLD, *arguments)
    else:
        async with conn.transaction():
            await conn.execute(LOCK_DEVICES, list(dict.fromkeys(device_ids)))
            row = await conn.fetchrow(INSERT_READINGS_WITH_LOOKUP, *arguments)
    assert row is not None
    positions = row["duplicate_positions"] or []
    return BatchOutcome(inserted=row["n"], duplicate_positions=frozenset(p - 1 for p in positions))
