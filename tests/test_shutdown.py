"""SIGTERM under load: the service stops accepting, writes what it acknowledged, and exits 0."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from tests.support.db import fetch
from tests.support.devices import BASE_TIME, reading
from tests.support.processes import free_port, read_output, running_fleetbed

DEVICES = 30


async def device_loop(
    session: aiohttp.ClientSession, base: str, acknowledged: list[tuple[str, str]], stop: asyncio.Event
) -> None:
    """Post readings with strictly increasing times; remember what got a 201."""
    async with session.post(f"{base}/login") as response:
        login = await response.json()
    headers = {"Authorization": f"Bearer {login['token']}"}
    n = 0
    while not stop.is_set():
        sent = reading(BASE_TIME + timedelta(seconds=n))
        try:
            async with session.post(f"{base}/measurement", json=sent, headers=headers) as response:
                if response.status == 201:
                    acknowledged.append((login["device_id"], sent["time"]))
                    n += 1
        except (aiohttp.ClientError, ConnectionError):
            await asyncio.sleep(0.01)  # refused after shutdown began: not acknowledged, nothing to check


async def test_sigterm_under_load_loses_no_acknowledged_reading(pg_url: str) -> None:
    port = free_port()
    data_dir = Path(tempfile.mkdtemp())
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": str(data_dir), "FLEETBED_PORT": str(port)}
    acknowledged: list[tuple[str, str]] = []
    stop = asyncio.Event()
    with running_fleetbed(["serve"], env, port) as process:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=DEVICES)) as session:
            base = f"http://127.0.0.1:{port}"
            loops = [asyncio.ensure_future(device_loop(session, base, acknowledged, stop)) for _ in range(DEVICES)]
            await asyncio.sleep(2.0)
            in_flight_when_signalled = len(acknowledged)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(process.wait, 60)
            stopped_in = time.monotonic() - signalled
            stop.set()
            await asyncio.gather(*loops)
        output = read_output(process)
    assert returncode == 0, output
    assert stopped_in < 30
    assert in_flight_when_signalled > 100, "the service was under load when it got SIGTERM"
    rows = await fetch(pg_url, "SELECT device_id::text AS device_id, time FROM measurement")
    stored = {(r["device_id"], r["time"]) for r in rows}
    acked = {(device, time_text) for device, time_text in acknowledged}
    missing = [(d, t) for d, t in acked if (d, datetime.fromisoformat(t)) not in stored]
    assert missing == [], f"{len(missing)} acknowledged readings lost"
    assert len(rows) >= len(acked)
