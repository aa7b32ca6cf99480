"""A device's whole day: log in, poll, post single, repeated and batched readings, read exact statistics."""

from __future__ import annotations

import uuid
from datetime import timedelta

from aiohttp.test_utils import TestClient

from tests.support.devices import BASE_TIME, login, reading, readings


async def test_device_walks_login_command_measurement_stats(client: TestClient) -> None:
    device = await login(client)

    command = await client.get("/command", headers=device.headers)
    assert command.status == 200
    assert await command.json() == {"charge": False, "fill": False, "flush": None, "interval_s": 30}

    single = await client.post("/measurement", json=reading(BASE_TIME), headers=device.headers)
    assert single.status == 201
    assert await single.json() == {"accepted": 1, "duplicates": 0}

    repeated = await client.post("/measurement", json=reading(BASE_TIME), headers=device.headers)
    assert repeated.status == 201, "a retried reading is acknowledged again"
    assert await repeated.json() == {"accepted": 1, "duplicates": 1}

    batch = readings(10, start=BASE_TIME + timedelta(minutes=1))
    stored = await client.post("/measurement", json=batch, headers=device.headers)
    assert stored.status == 201
    assert await stored.json() == {"accepted": 10, "duplicates": 0}

    stats = await (await client.get("/stats", headers=device.headers)).json()
    latest = batch[-1]
    assert stats["measurements"] == 11
    assert stats["devices"] == 1
    assert stats["reporting_devices"] == 1
    assert stats["total_battery_charge"] == latest["charge_now"]
    assert stats["total_water_volume"] == latest["water_level"]
    assert sum(hour["readings"] for hour in stats["mean_water_temp_by_hour"]) == 11


async def test_login_with_a_chosen_id_registers_once_and_returns_the_same_device(client: TestClient) -> None:
    chosen = uuid.uuid4()
    first = await client.post("/login", json={"device_id": str(chosen), "metadata": {"model": "K-2"}})
    first_body = await first.json()
    second = await client.post("/login", json={"device_id": str(chosen), "device_secret": first_body["device_secret"]})
    second_body = await second.json()
    assert first_body["device_id"] == second_body["device_id"] == str(chosen)
    assert (first_body["created"], second_body["created"]) == (True, False)
    stats = await (await client.get("/stats", headers={"Authorization": f"Bearer {second_body['token']}"})).json()
    assert stats["devices"] == 1


async def test_login_without_body_gives_a_random_device(client: TestClient) -> None:
    a, b = await login(client), await login(client)
    assert a.device_id != b.device_id
    assert a.device_id.version == 4


async def test_devices_only_write_their_own_readings(client: TestClient) -> None:
    alice, bob = await login(client), await login(client)
    same_time = reading(BASE_TIME)
    for device in (alice, bob):
        response = await client.post("/measurement", json=same_time, headers=device.headers)
        assert await response.json() == {"accepted": 1, "duplicates": 0}, "same time, different devices: both stored"
    stats = await (await client.get("/stats", headers=alice.headers)).json()
    assert stats["measurements"] == 2
    assert stats["reporting_devices"] == 2


async def test_duplicates_inside_one_batch_are_stored_once(client: TestClient) -> None:
    device = await login(client)
    response = await client.post("/measurement", json=[reading(BASE_TIME)] * 3, headers=device.headers)
    assert response.status == 201
    assert await response.json() == {"accepted": 3, "duplicates": 2}
    stats = await (await client.get("/stats", headers=device.headers)).json()
    assert stats["measurements"] == 1


async def test_a_batch_of_the_maximum_size_is_accepted(client: TestClient) -> None:
    device = await login(client)
    response = await client.post("/measurement", json=readings(1000), headers=device.headers)
    assert response.status == 201
    assert await response.json() == {"accepted": 1000, "duplicates": 0}
