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


# The slow-commit plant of the diagnosis tests: every insert statement into measurement (one per group-commit
# batch) sleeps 150 ms; SLOW_INSERTS_OFF takes it away.
SLOW_INSERTS = (
    "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(0.15); RETURN NULL; END $$;"
    "CREATE TRIGGER slow_insert BEFORE INSERT ON measurement FOR EACH STATEMENT EXECUTE FUNCTION slow_insert()"
)
SLOW_INSERTS_OFF = "DROP TRIGGER slow_insert ON measurement; DROP FUNCTION slow_insert()"


async def plant_slow_inserts(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SLOW_INSERTS)
    finally:
        await conn.close()
