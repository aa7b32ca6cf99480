"""What a test device does: log in, build readings, post them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

# Test readings are dated relative to the clock the suite runs under, never to a fixed day: the service refuses
# readings from the future and the database ages chunks by its own now(), so a fixed date is a test that fails on a
# later day. One day back, on the hour, leaves room for readings hours either side and keeps hourly buckets whole.
BASE_TIME = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)


def iso(moment: datetime) -> str:
    """`moment` as the RFC 3339 text a device sends, with `Z` for UTC."""
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Device:
    device_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def login(client: TestClient, **body: Any) -> Device:
    response = await client.post("/login", json=body or None)
    assert response.status == 200, await response.text()
    data = await response.json()
    return Device(uuid.UUID(data["device_id"]), data["token"])


def reading(time: object = BASE_TIME, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "time": time.isoformat() if isinstance(time, datetime) else time,
        "charge_now": 800,
        "charge_full": 1000,
        "charge_rate": -12.5,
        "ambient_temp": 21.5,
        "water_temp": 64.0,
        "water_level": 70,
    }
    values.update(fields)
    return values


def readings(count: int, start: datetime = BASE_TIME, step: timedelta = timedelta(seconds=30)) -> list[dict[str, Any]]:
    return [
        reading(start + i * step, charge_now=500 + i % 400, water_temp=40.0 + (i * 7) % 55, water_level=i % 101)
        for i in range(count)
    ]
