"""The /runs operator API: register a run, add snapshots, finish it, list and read it back from the database."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from aiohttp.test_utils import TestClient

from tests.conftest import OPERATOR_TOKEN
from tests.support.devices import BASE_TIME, iso, login

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
OPERATOR_JSON = {**OPERATOR, "Content-Type": "application/json"}


async def test_a_run_is_registered_snapshotted_and_finished(pg_client: TestClient) -> None:
    response = await pg_client.post("/runs", json={"name": "ramp 1", "config": {"shape": "step"}}, headers=OPERATOR)
    assert response.status == 201, await response.text()
    run = await response.json()
    assert (run["status"], run["finished_at"], run["config"]) == ("running", None, {"shape": "step"})

    for second, users in ((0, 10), (15, 20)):
        snapshot = {"time": iso(BASE_TIME + timedelta(seconds=second)), "stats": {"users": users}}
        response = await pg_client.post(f"/runs/{run['id']}/snapshots", json=snapshot, headers=OPERATOR)
        assert response.status == 201, await response.text()
    response = await pg_client.post(
        f"/runs/{run['id']}/finish", json={"status": "passed", "summary": {"capacity": 20}}, headers=OPERATOR
    )
    assert response.status == 200
    finished = await response.json()
    assert finished["status"] == "passed"
    assert finished["finished_at"] is not None

    detail = await (await pg_client.get(f"/runs/{run['id']}", headers=OPERATOR)).json()
    assert [snap["stats"]["users"] for snap in detail["snapshots"]] == [10, 20]
    assert detail["summary"] == {"capacity": 20}
    listing = await (await pg_client.get("/runs", headers=OPERATOR)).json()
    assert [(item["id"], item["snapshots"]) for item in listing["runs"]] == [(run["id"], 2)]


async def test_runs_are_for_operators_only(pg_client: TestClient) -> None:
    device = await login(pg_client)
    assert (await pg_client.post("/runs", json={"name": "x"})).status == 401
    assert (await pg_client.post("/runs", json={"name": "x"}, headers=device.headers)).status == 403
    assert (await pg_client.get("/runs", headers=device.headers)).status == 403


async def test_bad_run_requests_are_explained(pg_client: TestClient) -> None:
    response = await pg_client.post("/runs", json={"name": "", "config": [], "extra": 1}, headers=OPERATOR)
    assert response.status == 422
    missing = uuid.uuid4()
    response = await pg_client.post(f"/runs/{missing}/snapshots", json={"stats": {}}, headers=OPERATOR)
    assert response.status == 404
    assert (await pg_client.post(f"/runs/{missing}/finish", headers=OPERATOR)).status == 404
    assert (await pg_client.get("/runs/not-a-uuid", headers=OPERATOR)).status == 400
    assert (await pg_client.get("/runs?limit=0", headers=OPERATOR)).status == 422
    run = await (await pg_client.post("/runs", json={"name": "r"}, headers=OPERATOR)).json()
    response = await pg_client.post(f"/runs/{run['id']}/snapshots", json={"time": "yesterday"}, headers=OPERATOR)
    assert response.status == 422
    response = await pg_client.post(f"/runs/{run['id']}/finish", json={"status": "running"}, headers=OPERATOR)
    assert response.status == 422
    for bad in ({"summary": None}, {"status": {}}):
        response = await pg_client.post(f"/runs/{run['id']}/finish", json=bad, headers=OPERATOR)
        assert response.status == 422
    for document in (False, None):
        response = await pg_client.post(f"/runs/{run['id']}/finish", data=json.dumps(document), headers=OPERATOR_JSON)
        assert response.status == 400
    assert (await pg_client.post("/runs", json={"name": "n", "config": None}, headers=OPERATOR)).status == 422
