"""Devices and their commands."""

from __future__ import annotations

import enum
import hashlib
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


class LoginOutcome(enum.Enum):
    CREATED = "created"  # a new device row, with the secret's hash
    CLAIMED = "claimed"  # a device registered before secrets existed: it gets one now
    VERIFIED = "verified"  # the device proved itself with its secret
    REFUSED = "refused"  # the device exists and the secret is missing or wrong


# For devices registered outside POST /login (the backfill): the hash of a secret nobody holds, so no login can
# claim them the way a device registered before secrets existed is claimed.
UNCLAIMABLE_SECRET_HASH = "sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))"  # noqa: S105 (SQL)


def secret_hash(secret: str) -> bytes:
    # A device secret is 256 random bits: a fast hash is enough (nothing to guess, so nothing to slow down).
    return hashlib.sha256(secret.encode()).digest()


# A new device counts once in the totals of its shard (the device id picks it).
_ONE_NEW_DEVICE = fleet_totals_upsert("SELECT $4::int2, 1, 0, 0, 0, 0 FROM registered")
_REGISTER = f"""
WITH registered AS (
    INSERT INTO device (id, metadata, secret_hash) VALUES ($1, coalesce($2::jsonb, '{{}}'::jsonb), $3)
    ON CONFLICT (id) DO NOTHING
    RETURNING true AS created
), counted AS (
    {_ONE_NEW_DEVICE}
    RETURNING 1
)
SELECT count(*) > 0 FROM registered
"""


async def login_device(
    pool: asyncpg.Pool,
    device_id: uuid.UUID,
    metadata: dict[str, Any] | None,
    presented: bytes | None,
    issued: bytes,
    may_register: bool,
) -> LoginOutcome | None:
    """Log a device in by the hash of the secret it `presented` (None: it sent none), or register it with that
    hash, or with `issued` (the hash of a new secret) when it presented none. Metadata is replaced only when the
    device registers or proves itself. None: the device is new and `may_register` is False."""
    async with pool.acquire() as conn:
        if presented is not None:
            verified = await conn.fetchval(
                """
                UPDATE device SET last_login_at = now(), metadata = coalesce($2::jsonb, metadata)
                WHERE id = $1 AND secret_hash = $3
                RETURNING true
                """,
                device_id, metadata, presented,
            )  # fmt: skip
            if verified:
                return LoginOutcome.VERIFIED
        if not may_register and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM device WHERE id = $1)", device_id
        ):
            return None
        shard = device_id.int % TOTALS_SHARDS
        if await conn.fetchval(_REGISTER, device_id, metadata, presented or issued, shard):
            return LoginOutcome.CREATED
        claimed = await conn.fetchval(
            """
            UPDATE device SET last_login_at = now(), metadata = coalesce($2::jsonb, metadata), secret_hash = $3
            WHERE id = $1 AND secret_hash IS NULL
            RETURNING true
            """,
            device_id, metadata, presented or issued,
        )  # fmt: skip
        return LoginOutcome.CLAIMED if claimed else LoginOutcome.REFUSED


async def set_metadata(pool: asyncpg.Pool, device_id: uuid.UUID, metadata: dict[str, Any]) -> bool:
    """Replace a device's metadata (the operator's call); False when the device is not registered."""
    updated = await pool.fetchval(
        "UPDATE device SET metadata = $2::jsonb WHERE id = $1 RETURNING true", device_id, metadata
    )
    return bool(updated)


async def reset_secret(pool: asyncpg.Pool, device_id: uuid.UUID) -> bool:
    """Forget a device's secret: its next login gets a new one (the operator's call); False when unregistered."""
    updated = await pool.fetchval("UPDATE device SET secret_hash = NULL WHERE id = $1 RETURNING true", device_id)
    return bool(updated)


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
