"""The data layer: plain functions taking a connection or pool, SQL with `$n` parameters only."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Rows of fleet_totals and water_temp_hourly are spread over this many shards, so concurrent writers (tasks and
# processes) rarely queue on one row; readers sum the shards.
TOTALS_SHARDS = 16

# Errors that mean the database is unreachable, starting, restarting or out of connections: nothing is wrong
# with the request, it can be retried later (503 with Retry-After).
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
)

# A connection of our own, or one lent by the pool.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
