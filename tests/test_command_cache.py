"""GET /command answers from memory, and every worker drops a command the moment an operator changes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient

from app.keys import COMMANDS, METRICS
from app.server import create_app
from tests.conftest import OPERATOR_TOKEN, AiohttpClient, make_settings
from tests.support.db import scalar
from tests.support.devices import login

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def wait_until_listening(client: TestClient) -> None:
    for _ in range(100):
        if client.app[COMMANDS].listening:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the command cache never started listening")


def lookups(client: TestClient, result: str) -> float:
    return (
        client.app[METRICS].registry.get_sample_value("fleetbed_command_cache_lookups_total", {"result": result}) or 0
    )


async def test_repeated_polls_are_answered_from_memory(pg_client: TestClient) -> None:
    await wait_until_listening(pg_client)
    device = await login(pg_client)
    for _ in range(5):
        assert (await pg_client.get("/command", headers=device.headers)).status == 200
    assert (lookups(pg_client, "miss"), lookups(pg_client, "hit")) == (1, 4)


async def test_a_change_made_through_another_worker_reaches_this_one(
    pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    worker_a = await aiohttp_client(create_app(make_settings(pg_url, tmp_path)))
    worker_b = await aiohttp_client(create_app(make_settings(pg_url, tmp_path)))
    await wait_until_listening(worker_a)
    device = await login(worker_a)
    assert (await (await worker_a.get("/command", headers=device.headers)).json())["charge"] is False
    assert len(worker_a.app[COMMANDS]) == 1, "worker A now holds the fleet default for the device"

    put = await worker_b.put(f"/devices/{device.device_id}/command", json={"charge": True}, headers=OPERATOR)
    assert put.status == 200
    for _ in range(100):  # the NOTIFY travels through the database
        if len(worker_a.app[COMMANDS]) == 0:
            break
        await asyncio.sleep(0.02)
    assert (await (await worker_a.get("/command", headers=device.headers)).json())["charge"] is True

    await worker_b.delete(f"/devices/{device.device_id}/command", headers=OPERATOR)
    for _ in range(100):
        if len(worker_a.app[COMMANDS]) == 0:
            break
        await asyncio.sleep(0.02)
    assert (await (await worker_a.get("/command", headers=device.headers)).json())["charge"] is False


async def test_without_its_listener_the_cache_stores_nothing(pg_client: TestClient, pg_url: str) -> None:
    await wait_until_listening(pg_client)
    device = await login(pg_client)
    await pg_client.get("/command", headers=device.headers)
    assert len(pg_client.app[COMMANDS]) == 1
    killed = await scalar(
        pg_url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    assert killed == 1
    for _ in range(100):
        if not pg_client.app[COMMANDS].listening:
            break
        await asyncio.sleep(0.02)
    assert len(pg_client.app[COMMANDS]) == 0, "a missed notification must not leave a stale entry"
    await pg_client.get("/command", headers=device.headers)
    assert len(pg_client.app[COMMANDS]) == 0 or pg_client.app[COMMANDS].listening
    await wait_until_listening(pg_client)  # it reconnects by itself
