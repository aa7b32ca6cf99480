"""Sessions that keep PostgreSQL's CPU busy, as heavy reports running beside the service would:

    python -m tests.support.busy_sessions DATABASE_URL SESSIONS

Each session runs an endless CPU-bound query until stopped (SIGTERM); stopping cancels the queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import asyncpg

ENDLESS = "SELECT count(*) FROM generate_series(1::bigint, 1000000000000::bigint)"


async def busy(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # A backend notices its client is gone within a second even mid-query (PostgreSQL 14+).
        await conn.execute("SET client_connection_check_interval = '1s'")
        await conn.execute(ENDLESS)
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)


async def main(url: str, sessions: int) -> None:
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    tasks = [asyncio.create_task(busy(url)) for _ in range(sessions)]
    await stopping.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
