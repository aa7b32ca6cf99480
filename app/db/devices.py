"""Devices and their commands."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import asyncpg
import orjson

from app.db import TOTALS_SHARDS, Connection
from app.db.derived import fleet_totals_upsert


@dataclass(frozen=True)
class Command:
    charge: bool
    fill: bool
    flush: float | None
    interval_s: int

    def as_json(self) -> dict[str, Any]:
        return {"charge": self.charge, "fill": self.fill, "flush": self.flush, "interval_s": self.interval_s}

    @cached_property
    def encoded(self) -> bytes:
        """The JSON body, encoded once: a standing command is answered many times."""
        return orjson.dumps(self.as_json())


# A new device counts once in the totals of its shard (the device id picks it).
_ONE_NEW_DEVICE = fleet_totals_upsert("SELECT $3::int2, 1, 0, 0, 0, 0 FROM registered WHERE created")
_REGISTER = f"""
WITH registered AS (
    INSERT INTO device AS d (id, metadata) VALUES ($1, coalesce($2::jsonb, '{{}}'::jsonb))
    ON CONFLICT (id) DO UPDATE
        SET last_login_at = now(), metadata = coalesce($2::jsonb, d.metadata)
    RETURNING (xmax = 0) AS created
), counted AS (
    {_ONE_NEW_DEVICE}
    RETURNING 1
)
SELECT created FROM registered
"""


async def register_device(pool: asyncpg.Pool, device_id: uuid.UUID, metadata: dict[str, Any] | None) -> bool:
    """Register the device or record its login; return True when it is new. Metadata is replaced when given."""
    created: bool = await pool.fetchval(_REGISTER, device_id, metadata, device_id.int % TOTALS_SHARDS)
    return created


async def unregistered_devices(conn: Connection, device_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `device_ids` that have no `device` row (a token can outlive its row: a restored or new database)."""
    rows = await conn.fetch(
        "SELECT id FROM unnest($1::uuid[]) AS given(id)"
        " WHERE NOT EXISTS (SELECT 1 FROM device d WHERE d.id = given.id)",
        device_ids,
    )
    return {row["id"] for row in rows}


async def device_exists(pool: asyncpg.Pool, device_id: uuid.UUID) -> bool:
    found: bool = await pool.fetchval("SELECT EXISTS (SELECT 1 FROM device WHERE id = $1)", device_id)
    return found


async def pending_command(pool: asyncpg.Pool, device_id: uuid.UUID) -> Command | None:
    row = await pool.fetchrow("SELECT charge, fill, flush, interval_s FROM command WHERE device_id = $1", device_id)
    return None if row is None else Command(row["charge"], row["fill"], row["flush"], row["interval_s"])


# Every change of a standing command is announced on this channel, with the device id as payload, in the
# transaction that makes it; `app.command_cache` listens on it.
COMMAND_CHANNEL = "fleetbed_command"
NOTIFY_COMMAND_CHANGED = "SELECT pg_notify($1::text, $2::text)"


async def set_command(pool: asyncpg.Pool, device_id: uuid.UUID, command: Command) -> bool:
    """Store the device's standing command and tell every worker; False when the device is not registered."""
    async with pool.acquire() as conn, conn.transaction():
        stored = await conn.fetchval(
            """
            INSERT INTO command (device_id, charge, fill, flush, interval_s)
            SELECT id, $2, $3, $4, $5 FROM device WHERE id = $1
            ON CONFLICT (device_id) DO UPDATE
                SET charge = EXCLUDED.charge, fill = EXCLUDED.fill, flush = EXCLUDED.flush,
                    interval_s = EXCLUDED.interval_s, updated_at = now()
            RETURNING true
            """,
            device_id,
            command.charge,
            command.fill,
            command.flush,
            command.interval_s,
        )
        if stored:
            await conn.execute(NOTIFY_COMMAND_CHANGED, COMMAND_CHANNEL, str(device_id))
    return bool(stored)


async def clear_command(pool: asyncpg.Pool, device_id: uuid.UUID) -> bool:
    """Remove the standing command (the device falls back to the fleet default); False when there was none."""
    async with pool.acquire() as conn, conn.transaction():
        removed = await conn.fetchval("DELETE FROM command WHERE device_id = $1 RETURNING true", device_id)
        if removed:
            await conn.execute(NOTIFY_COMMAND_CHANGED, COMMAND_CHANNEL, str(device_id))
    return bool(removed)
