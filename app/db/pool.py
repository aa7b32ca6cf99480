"""The asyncpg pool and what the service learns about its database at startup."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import orjson

from app.db import Connection


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
    )


async def create_pool(dsn: str, min_size: int, max_size: int, timeout_s: float) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        # A statement that has not answered in twice the connect timeout is not coming back soon: the request
        # gets a 503 and the device retries, instead of a request hanging on a partitioned database.
        command_timeout=timeout_s * 2,
        init=_init_connection,
        # The schema is fixed while the service runs; statement cache stays on.
        max_inactive_connection_lifetime=300,
    )
    assert pool is not None
    return pool


@dataclass(frozen=True)
class DatabaseLayout:
    """What the service learns about its database at startup (logged, and shown in metrics)."""

    timescaledb_version: str | None
    migrated: bool


async def read_layout(conn: Connection) -> DatabaseLayout:
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    migrated = await conn.fetchval("SELECT to_regclass('water_temp_hourly') IS NOT NULL")
    return DatabaseLayout(timescaledb_version=version, migrated=migrated)
