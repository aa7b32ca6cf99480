"""Devices that behave like the real ones under faults: strictly increasing reading times, each reading retried
until it is acknowledged. What they were told (201) is the ground truth the fault tests check the database against.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp

from tests.support.devices import BASE_TIME, reading


@dataclass
class DriverReport:
    acknowledged: set[tuple[str, str]] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    connection_errors: int = 0

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def _device(
    base: str, session: aiohttp.ClientSession, report: DriverReport, stop: asyncio.Event, pace_s: float
) -> None:
    device_id, headers = None, {}
    while device_id is None and not stop.is_set():
        try:
            async with session.post(f"{base}/login") as response:
                if response.status == 200:
                    body = await response.json()
                    device_id, headers = body["device_id"], {"Authorization": f"Bearer {body['token']}"}
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            report.connection_errors += 1
            await asyncio.sleep(0.1)
    n = 0
    while not stop.is_set():
        sent = reading(BASE_TIME + timedelta(seconds=n), charge_now=n % 1000, water_level=n % 101)
        try:
            async with session.post(f"{base}/measurement", json=sent, headers=headers) as response:
                report.count(response.status)
                if response.status == 201:
                    report.acknowledged.add((str(device_id), sent["time"]))
                    n += 1
                    if pace_s:
                        await asyncio.sleep(pace_s)
                    continue
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            report.connection_errors += 1
        await asyncio.sleep(0.05)  # not acknowledged: the same reading again, shortly


async def drive(base: str, devices: int, stop: asyncio.Event, report: DriverReport, pace_s: float = 0.0) -> None:
    """Run `devices` devices until `stop`; each posts as fast as it is answered, or every `pace_s` seconds."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=devices)) as session:
        await asyncio.gather(*(_device(base, session, report, stop, pace_s) for _ in range(devices)))
