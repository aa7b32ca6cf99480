"""Looking at the database behind the API, as a user with psql would."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

_CLOSE_TIMEOUT_S = 2.0


async def close(conn: asyncpg.Connection) -> None:
    # The TimescaleDB test server never drops the socket after Terminate: bound the wait, then cut it.
    try:
        await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT_S)
    except TimeoutError:
        conn.terminate()


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, ssl=False)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await close(conn)


async def scalar(url: str, sql: str, *args: Any) -> Any:
    rows = await fetch(url, sql, *args)
    return rows[0][0] if rows else None


async def stored_rows(url: str) -> dict[str, int]:
    """Row counts of every table a request could write to."""
    counts = {}
    for table in ("device", "measurement", "device_state", "command"):
        counts[table] = await scalar(url, f"SELECT count(*) FROM {table}")
    return counts
