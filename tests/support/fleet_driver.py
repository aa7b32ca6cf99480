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
    retry_after: set[str | None] = field(default_factory=set)  # the Retry-After of every 503
    connection_errors: int = 0
    relogins: int = 0  # devices told 401 (their row gone) that logged in again with their id

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def _device(
    base: str, session: aiohttp.ClientSession, report: DriverReport, stop: asyncio.Event, pace_s: float
) -> None:
    device_id, secret, headers = await _login(base, session, report, stop, None, None)
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
                if response.status == 503:
                    report.retry_after.add(response.headers.get("Retry-After"))
                if response.status == 401:  # what a real device does: log in again, then send the reading again
                    report.relogins += 1
                    device_id, secret, headers = await _login(base, session, report, stop, device_id, secret)
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            report.connection_errors += 1
        await asyncio.sleep(0.05)  # not acknowledged: the same reading again, shortly


async def _login(
    base: str,
    session: aiohttp.ClientSession,
    report: DriverReport,
    stop: asyncio.Event,
    device_id: str | None,
    secret: str | None,
) -> tuple[str | None, str | None, dict[str, str]]:
    """Log in (as `device_id` with its `secret` when given, else as a new device) until it works or the run stops;
    the device keeps the secret its first login returned, as a real one does."""
    while not stop.is_set():
        try:
            body = {"device_id": device_id, "device_secret": secret} if device_id else None
            async with session.post(f"{base}/login", json=body) as response:
                if response.status == 200:
                    answer = await response.json()
                    secret = answer.get("device_secret", secret)
                    return answer["device_id"], secret, {"Authorization": f"Bearer {answer['token']}"}
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            report.connection_errors += 1
        await asyncio.sleep(0.1)
    return device_id, secret, {}


async def drive(base: str, devices: int, stop: asyncio.Event, report: DriverReport, pace_s: float = 0.0) -> None:
    """Run `devices` devices until `stop`; each posts as fast as it is answered, or every `pace_s` seconds."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=devices)) as session:
        await asyncio.gather(*(_device(base, session, report, stop, pace_s) for _ in range(devices)))
