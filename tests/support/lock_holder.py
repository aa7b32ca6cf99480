"""A session that holds the devices' state rows for seconds at a time, as a long report or a migration would: the
service's writers (whose one statement updates the state row of each device in their batch) queue behind it.

    python -m tests.support.lock_holder DATABASE_URL HOLD_S

Loops until stopped (SIGTERM): lock every device's state row (FOR UPDATE), hold them HOLD_S, commit, let go briefly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import asyncpg

PAUSE_S = 0.2


async def main(url: str, hold_s: float) -> None:
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    conn = await asyncpg.connect(url)
    try:
        while not stopping.is_set():
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM device_state FOR UPDATE")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), hold_s)
            await asyncio.sleep(PAUSE_S)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
