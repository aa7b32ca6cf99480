"""Fleet-size gauges read from the database: rows in `measurement` and devices active lately.

Both are cheap: the row count is the sum of the `fleet_totals` shards the ingest path keeps (exact, O(shards),
never a scan of `measurement`), active devices count `device_state` rows updated within the window (one row per
device). They are refreshed by a background task every `interval_s`, never on the scrape path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from prometheus_client import CollectorRegistry, Gauge, Histogram

from app.db import Connection

log = logging.getLogger(__name__)

ACTIVE_WINDOW_S = 300
REFRESH_INTERVAL_S = 15.0


async def measurement_rows(conn: Connection) -> int:
    rows: int = await conn.fetchval("SELECT coalesce(sum(measurements), 0)::bigint FROM fleet_totals")
    return rows


async def active_devices(conn: Connection, window_s: float) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM device_state WHERE updated_at > now() - make_interval(secs => $1)", window_s
    )
    return count


class FleetSizeMetrics:
    """`fleetbed_measurement_rows` and `fleetbed_active_devices`, refreshed in the background."""

    def __init__(self, registry: CollectorRegistry, query_duration: Histogram) -> None:
        self.rows = Gauge(
            "fleetbed_measurement_rows",
            "Rows in the measurement table (from the fleet totals the ingest path keeps).",
            registry=registry,
        )
        self.active = Gauge(
            "fleetbed_active_devices",
            f"Devices whose latest state changed in the last {ACTIVE_WINDOW_S} s.",
            registry=registry,
        )
        self.query_duration = query_duration
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, pool: asyncpg.Pool) -> None:
        started = time.perf_counter()
        async with pool.acquire() as conn:
            rows = await measurement_rows(conn)
            active = await active_devices(conn, ACTIVE_WINDOW_S)
        self.query_duration.labels("fleet_size").observe(time.perf_counter() - started)
        self.rows.set(rows)
        self.active.set(active)

    async def _refresh_forever(self, pool: asyncpg.Pool, interval_s: float) -> None:
        while True:
            try:
                await self.refresh(pool)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("could not refresh fleet-size metrics: %s", exc)
            await asyncio.sleep(interval_s)

    def start(self, pool: asyncpg.Pool, interval_s: float = REFRESH_INTERVAL_S) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(pool, interval_s), name="fleet-size-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
