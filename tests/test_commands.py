"""Operators set standing commands; devices get theirs on the next poll, or the fleet default."""

from __future__ import annotations

import uuid

from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN
from tests.support.devices import login

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
DEFAULT = {"charge": False, "fill": False, "flush": None, "interval_s": 30}


async def test_operator_command_reaches_only_its_device(client: TestClient) -> None:
    target, bystander = await login(client), await login(client)
    command = {"charge": True, "fill": True, "flush": 25, "interval_s": 10}
    stored = await client.put(f"/devices/{target.device_id}/command", json=command, headers=OPERATOR)
    assert stored.status == 200
    assert await stored.json() == {**command, "flush": 25.0}
    assert await (await client.get("/command", headers=target.headers)).json() == {**command, "flush": 25.0}
    assert await (await client.get("/command", headers=bystander.headers)).json() == DEFAULT


async def test_partial_command_takes_defaults_and_replaces_the_previous(client: TestClient) -> None:
    device = await login(client)
    await client.put(f"/devices/{device.device_id}/command", json={"fill": True, "interval_s": 5}, headers=OPERATOR)
    second = await client.put(f"/devices/{device.device_id}/command", json={"charge": True}, headers=OPERATOR)
    assert await second.json() == {**DEFAULT, "charge": True}
    assert await (await client.get("/command", headers=device.headers)).json() == {**DEFAULT, "charge": True}


async def test_deleting_the_command_restores_the_default(client: TestClient) -> None:
    device = await login(client)
    await client.put(f"/devices/{device.device_id}/command", json={"charge": True}, headers=OPERATOR)
    deleted = await client.delete(f"/devices/{device.device_id}/command", headers=OPERATOR)
    assert deleted.status == 200
    assert await (await client.get("/command", headers=device.headers)).json() == DEFAULT
    again = await client.delete(f"/devices/{device.device_id}/command", headers=OPERATOR)
    assert again.status == 200, "deleting an absent command is idempotent"


async def test_unknown_device_is_404(client: TestClient) -> None:
    nobody = uuid.uuid4()
    put = await client.put(f"/devices/{nobody}/command", json={"charge": True}, headers=OPERATOR)
    assert put.status == 404
    assert str(nobody) in (await put.json())["message"]
    delete = await client.delete(f"/devices/{nobody}/command", headers=OPERATOR)
    assert delete.status == 404


async def test_bad_device_ids_and_commands_are_rejected(client: TestClient) -> None:
    for raw in ("not-a-uuid", "..%2F..%2Fetc%2Fpasswd", "1' OR '1'='1"):
        response = await client.put(f"/devices/{raw}/command", json={"charge": True}, headers=OPERATOR)
        assert response.status in (400, 404), raw
        assert (await response.json())["error"] in ("bad_request", "not_found")
    device = await login(client)
    for body, field in (
        ({"charge": "yes"}, "charge"),
        ({"fill": 1}, "fill"),
        ({"flush": 150}, "flush"),
        ({"flush": True}, "flush"),
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": 2.5}, "interval_s"),
        ({"interval_s": 1e300}, "interval_s"),
        ({"reboot": True}, "reboot"),
    ):
        response = await client.put(f"/devices/{device.device_id}/command", json=body, headers=OPERATOR)
        assert response.status == 422, body
        assert field in {item["field"] for item in (await response.json())["fields"]}
    assert await (await client.get("/command", headers=device.headers)).json() == DEFAULT
