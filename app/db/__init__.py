"""The data layer: plain functions taking a connection or pool, SQL with `$n` parameters only.

It imports nothing of `app` outside `app/db` (a test holds it to that): plain values in, plain values out.

- `pool`: the asyncpg pool and the database layout learnt at startup; `migrations`: the migration runner;
- `readings`: `Reading`, one measurement; `measurements`: storing readings (the ingest statement);
- `derived`: how the hourly rollup and the fleet totals accumulate, shared by every writer;
- `devices`: devices and their standing commands; `runs`: load-test run records;
- `stats`: GET /stats from maintained state; `fleet_size`: the fleet-size gauges;
- `backfill`: the SQL of `fleetbed backfill`.
"""

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
