"""The asyncpg pool and what the service learns about its database at startup."""

from __future__ import annotations

import time
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
        command_timeout=max(timeout_s * 6, 30.0),
        init=_init_connection,
        # The schema is fixed while the service runs; statement cache stays on.
        max_inactive_connection_lifetime=300,
    )
    assert pool is not None
    return pool


@dataclass(frozen=True)
class DatabaseLayout:
    """Facts read once at startup that choose between the TimescaleDB and plain PostgreSQL paths."""

    timescaledb_version: str | None
    maintains_hourly_rollup: bool
    migrated: bool


async def read_layout(conn: Connection) -> DatabaseLayout:
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    relkind = await conn.fetchval(
        "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass('measurement_hourly')"
    )
    # A plain table is the rollup the ingest path keeps; a view is TimescaleDB's continuous aggregate.
    return DatabaseLayout(
        timescaledb_version=version, maintains_hourly_rollup=relkind == "r", migrated=relkind is not None
    )


class LayoutCache:
    """The layout, read at startup; re-read (at most once a second) while the schema is not yet migrated."""

    RECHECK_INTERVAL_S = 1.0

    def __init__(self, layout: DatabaseLayout) -> None:
        self.layout = layout
        self._checked_at = time.monotonic()

    async def get(self, pool: asyncpg.Pool) -> DatabaseLayout:
        if self.layout.migrated or time.monotonic() - self._checked_at < self.RECHECK_INTERVAL_S:
            return self.layout
        self._checked_at = time.monotonic()
        async with pool.acquire() as conn:
            self.layout = await read_layout(conn)
        return self.layout
