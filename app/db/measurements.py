"""Storing readings: all-or-nothing, idempotent per (device, time), with state, rollup and totals kept in step.

A batch (readings of one or many devices) is one statement that inserts the readings (`INSERT ... SELECT FROM
unnest(...) ON CONFLICT DO NOTHING`), and from the rows actually inserted updates `device_state` (newest by
time wins: late batches of older readings never overwrite it), the hourly rollup `water_temp_hourly`, and
`fleet_totals` by the change in each device's latest state. It answers how many rows were new and which input
positions were duplicates.

The change of each device's state comes back from the `device_state` upsert itself, which records it in the
row it writes (see `STATE_CHANGE`): exact against concurrent writers in this process or another, in one autocommitted
statement, on every server version (PostgreSQL 15-18, TimescaleDB). No lock, lookup or BEGIN/COMMIT around it.

Rows are written in key order so concurrent batches take their row locks in the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from app.db import Connection
from app.db.derived import fleet_totals_upsert, hourly_rollup_upsert
from app.db.readings import Reading

# The statement is built from these pieces (a WITH query, one CTE each); bench/ingest_designs.py composes the
# same pieces into the derived-state design it measures this one against.
INCOMING_AND_INSERTED = """
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
)"""

# The batch's newest inserted reading per device, with the count of the device's inserted readings.
PER_DEVICE = """, per_device AS (
    SELECT DISTINCT ON (device_id) *, count(*) OVER (PARTITION BY device_id) AS readings
    FROM inserted
    ORDER BY device_id, time DESC
)"""

# How each device's latest state changed, as (readings, first_reading, charge_delta, level_delta) per device.
# The upsert records the change in the row it writes (readings_before, charge_now_change, water_level_change:
# the SET expressions see the row version the update replaces, which ON CONFLICT has locked and is the newest
# committed one), and returns it. So the change is exact against concurrent writers on any server version,
# without RETURNING old.* (PostgreSQL 18 only), without locking the devices first and without a transaction
# around the statement.
STATE_CHANGE = """, change AS (
    INSERT INTO device_state AS s (device_id, time, charge_now, charge_full, charge_rate, ambient_temp,
                                   water_temp, water_level, readings, charge_now_change, water_level_change)
    SELECT device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp, water_level, readings,
           charge_now, water_level
    FROM per_device ORDER BY device_id
    ON CONFLICT (device_id) DO UPDATE SET
        readings = s.readings + EXCLUDED.readings,
        readings_before = s.readings,
        updated_at = now(),
        time = greatest(s.time, EXCLUDED.time),
        charge_now = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.charge_now ELSE s.charge_now END,
        charge_full = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.charge_full ELSE s.charge_full END,
        charge_rate = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.charge_rate ELSE s.charge_rate END,
        ambient_temp = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.ambient_temp ELSE s.ambient_temp END,
        water_temp = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.water_temp ELSE s.water_temp END,
        water_level = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.water_level ELSE s.water_level END,
        charge_now_change = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.charge_now - s.charge_now ELSE 0 END,
        water_level_change = CASE WHEN EXCLUDED.time > s.time THEN EXCLUDED.water_level - s.water_level ELSE 0 END
    RETURNING readings - readings_before AS readings, readings_before = 0 AS first_reading,
              charge_now_change AS charge_delta, water_level_change AS level_delta
)"""

# The UTC hour, as date_trunc('hour', time, 'UTC') gives it: date_bin is arithmetic on the stored instant, where
# date_trunc with a zone name resolves the zone for every row (half the statement's time, in EXPLAIN ANALYZE).
# PostgreSQL raises on float underflow: squares of values this small count as the zero they are.
_INSERTED_BY_HOUR = """SELECT date_bin('1 hour', time, '1970-01-01 00:00:00+00'), $9::int2, count(*), sum(water_temp),
           sum(CASE WHEN abs(water_temp) < 1e-150 THEN 0 ELSE water_temp * water_temp END)
    FROM inserted GROUP BY 1 ORDER BY 1"""
_CHANGE_OF_TOTALS = """SELECT $9::int2, 0, sum(readings), count(*) FILTER (WHERE first_reading), sum(charge_delta),
           sum(level_delta)
    FROM change HAVING count(*) > 0"""

# From `inserted` and `change`: the hourly rollup and the totals of writer shard $9.
ROLLUP_AND_TOTALS = f""", rollup AS (
    {hourly_rollup_upsert(_INSERTED_BY_HOUR)}
    RETURNING 1
), totals AS (
    {fleet_totals_upsert(_CHANGE_OF_TOTALS)}
    RETURNING 1
)"""

# How many readings were new, and the positions of the others ($10: the batch's size).
ANSWER = """, stored AS (
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

INSERT_READINGS = INCOMING_AND_INSERTED + PER_DEVICE + STATE_CHANGE + ROLLUP_AND_TOTALS + ANSWER


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
    """Store readings (device_ids[i] owns readings[i]) in one statement; repeated (device, time) are skipped.

    `shard` picks the rollup and totals rows this writer updates; concurrent writers should use different ones.
    """
    arguments = (*reading_columns(device_ids, readings), shard, len(readings))
    # One statement is its own transaction: nothing to lock or look up first, one round trip per batch.
    row = await conn.fetchrow(INSERT_READINGS, *arguments)
    assert row is not None
    positions = row["duplicate_positions"] or []
    return BatchOutcome(inserted=row["n"], duplicate_positions=frozenset(p - 1 for p in positions))
