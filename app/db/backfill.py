"""The SQL of `fleetbed backfill` (the numpy side lives in `app.backfill`): whole blocks of devices at once.

Every function takes plain column lists, one entry per device or per hour, so the data layer knows nothing
of how the history was generated.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from app.db import Connection
from app.db.derived import fleet_totals_upsert, hourly_rollup_upsert
from app.db.devices import UNCLAIMABLE_SECRET_HASH

_BACKFILL_METADATA = '{"source": "backfill"}'

_ADD_HOURS = hourly_rollup_upsert(
    """SELECT hour, $5::int2, n, s, ss FROM unnest($1::timestamptz[], $2::int8[], $3::float8[], $4::float8[])
        AS r(hour, n, s, ss)
    ORDER BY hour"""
)
_ADD_REPORTING_DEVICES = fleet_totals_upsert("SELECT $1::int2, $2::bigint, $3::bigint, $2, $4::bigint, $5::bigint")
_ADD_DEVICES = fleet_totals_upsert("SELECT $1::int2, $2::bigint, 0, 0, 0, 0")


async def register_devices(conn: Connection, ids: Sequence[uuid.UUID]) -> None:
    await conn.execute(
        f"INSERT INTO device (id, metadata, secret_hash) SELECT id, $2::jsonb, {UNCLAIMABLE_SECRET_HASH} "
        "FROM unnest($1::uuid[]) AS given (id)",
        list(ids),
        _BACKFILL_METADATA,
    )


async def copy_readings(conn: Connection, binary: bytes, columns: Sequence[str]) -> None:
    """Readings in PostgreSQL's binary COPY format (`app.backfill.history.binary_copy`)."""
    await conn.copy_to_table("measurement", source=io.BytesIO(binary), columns=list(columns), format="binary")


async def insert_latest_state(
    conn: Connection, ids: Sequence[uuid.UUID], latest: Sequence[Sequence[object]], readings_per_device: int
) -> None:
    """device_state of new devices: `latest` holds the columns time, charge_now, charge_full, charge_rate,
    ambient_temp, water_temp, water_level, one entry per device."""
    await conn.execute(
        """
        INSERT INTO device_state (device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp,
                                  water_level, readings)
        SELECT *, $9::bigint FROM unnest($1::uuid[], $2::timestamptz[], $3::int4[], $4::int4[], $5::float8[],
                                         $6::float8[], $7::float8[], $8::int2[])
        """,
        list(ids),
        *(list(column) for column in latest),
        readings_per_device,
    )


async def add_to_hourly_rollup(
    conn: Connection,
    hours: Sequence[datetime],
    counts: Sequence[int],
    sums: Sequence[float],
    squares: Sequence[float],
    shard: int,
) -> None:
    await conn.execute(
        _ADD_HOURS,
        list(hours),
        list(counts),
        list(sums),
        list(squares),
        shard,
    )


async def add_to_totals(
    conn: Connection, shard: int, devices: int, measurements: int, battery_charge: int, water_volume: int
) -> None:
    """New devices that all report (they count as reporting devices), with their readings and latest state."""
    await conn.execute(
        _ADD_REPORTING_DEVICES,
        shard,
        devices,
        measurements,
        battery_charge,
        water_volume,
    )


async def add_devices_to_totals(conn: Connection, shard: int, devices: int) -> None:
    """New devices only: their readings are counted by the service's own write path (`store_batch`)."""
    await conn.execute(_ADD_DEVICES, shard, devices)


async def supports_copy(conn: Connection) -> bool:
    """PGlite's wire server refuses COPY FROM STDIN up front; real PostgreSQL servers take it."""
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMPORARY TABLE fleetbed_copy_probe (n int) ON COMMIT DROP")
            await conn.copy_to_table("fleetbed_copy_probe", source=io.BytesIO(b"1\n"), format="csv")
    except (asyncpg.FeatureNotSupportedError, asyncpg.PostgresError):
        return False
    return True


async def refresh_continuous_aggregate(conn: Connection, start: datetime, end: datetime) -> None:
    """On TimescaleDB, refresh `measurement_hourly` over [start, end); elsewhere nothing."""
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"):
        return
    await conn.execute(
        "CALL refresh_continuous_aggregate('measurement_hourly', $1::timestamptz, $2::timestamptz)", start, end
    )
