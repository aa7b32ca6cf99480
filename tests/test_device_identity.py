"""A device is itself: its secret (returned once, stored hashed) proves it on later logins, only it or an operator
changes its metadata, enrolment is closed beyond loopback unless opened, logins are rate-limited per address, and
readings older than the age limit are refused."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.limits import DEFAULT_MAX_READING_AGE_S
from app.server import create_app
from app.settings import Settings
from tests.conftest import OPERATOR_TOKEN, AiohttpClient, make_settings
from tests.support.db import fetch, scalar
from tests.support.devices import reading

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


async def log_in(client: TestClient, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/login", json=body)
    return response.status, await response.json()


async def test_the_secret_is_returned_once_stored_hashed_and_required_later(pg_client: TestClient, pg_url: str) -> None:
    device_id = str(uuid.uuid4())
    status, first = await log_in(pg_client, device_id=device_id, metadata={"model": "K-1"})
    assert status == 200
    assert first["created"] is True
    secret = first["device_secret"]
    stored = await scalar(pg_url, "SELECT secret_hash FROM device WHERE id = $1", uuid.UUID(device_id))
    assert stored == hashlib.sha256(secret.encode()).digest(), "only the secret's hash is stored"

    status, anyone = await log_in(pg_client, device_id=device_id, metadata={"model": "forged"})
    assert status == 401
    assert "device_secret" in anyone["message"]
    status, _ = await log_in(pg_client, device_id=device_id, device_secret="x" * 43)
    assert status == 401
    metadata = await scalar(pg_url, "SELECT metadata->>'model' FROM device WHERE id = $1", uuid.UUID(device_id))
    assert metadata == "K-1", "a refused login changes nothing"

    status, again = await log_in(pg_client, device_id=device_id, device_secret=secret, metadata={"model": "K-2"})
    assert status == 200
    assert again["created"] is False
    assert "device_secret" not in again, "the secret is returned once"
    metadata = await scalar(pg_url, "SELECT metadata->>'model' FROM device WHERE id = $1", uuid.UUID(device_id))
    assert metadata == "K-2", "the device itself changes its metadata"


async def test_a_malformed_secret_is_422(pg_client: TestClient) -> None:
    for bad in ("short", 42, "y" * 1000):
        status, body = await log_in(pg_client, device_id=str(uuid.uuid4()), device_secret=bad)
        assert status == 422
        assert [field["field"] for field in body["fields"]] == ["device_secret"]


async def test_a_device_registered_before_secrets_gets_one_at_its_next_login(
    pg_client: TestClient, pg_url: str
) -> None:
    device_id = uuid.uuid4()
    await fetch(pg_url, "INSERT INTO device (id) VALUES ($1)", device_id)
    status, claimed = await log_in(pg_client, device_id=str(device_id))
    assert status == 200
    assert claimed["created"] is False
    assert claimed["device_secret"]
    status, _ = await log_in(pg_client, device_id=str(device_id))
    assert status == 401, "claimed once: from then on the secret is required"


async def test_a_device_whose_row_is_gone_registers_again_with_its_secret(pg_client: TestClient, pg_url: str) -> None:
    status, first = await log_in(pg_client)
    assert status == 200
    device_id = uuid.UUID(first["device_id"])
    await fetch(pg_url, "DELETE FROM device WHERE id = $1", device_id)  # a restore from an older backup
    status, again = await log_in(pg_client, device_id=str(device_id), device_secret=first["device_secret"])
    assert status == 200
    assert again["created"] is True
    assert "device_secret" not in again, "it keeps the secret it has"
    status, _ = await log_in(pg_client, device_id=str(device_id), device_secret=first["device_secret"])
    assert status == 200


async def test_the_operator_sets_metadata_and_resets_a_secret(pg_client: TestClient, pg_url: str) -> None:
    status, first = await log_in(pg_client, metadata={"site": "a"})
    device_id = first["device_id"]
    device_headers = {"Authorization": f"Bearer {first['token']}"}
    assert (
        await pg_client.put(f"/devices/{device_id}/metadata", json={"site": "b"}, headers=device_headers)
    ).status == 403
    response = await pg_client.put(f"/devices/{device_id}/metadata", json={"site": "b"}, headers=OPERATOR)
    assert response.status == 200
    assert await scalar(pg_url, "SELECT metadata->>'site' FROM device WHERE id = $1", uuid.UUID(device_id)) == "b"
    unknown = uuid.uuid4()
    assert (await pg_client.put(f"/devices/{unknown}/metadata", json={}, headers=OPERATOR)).status == 404
    assert (await pg_client.put(f"/devices/{device_id}/metadata", json=[1], headers=OPERATOR)).status == 422

    assert (await pg_client.delete(f"/devices/{device_id}/secret", headers=OPERATOR)).status == 200
    status, renewed = await log_in(pg_client, device_id=device_id)
    assert status == 200
    assert renewed["device_secret"] != first["device_secret"]


@pytest.mark.parametrize(
    ("host", "key", "opened", "enrolment"),
    [
        ("127.0.0.1", None, False, "open"),
        ("::1", None, False, "open"),
        ("localhost", None, False, "open"),
        ("0.0.0.0", None, False, "closed"),  # noqa: S104
        ("10.1.2.3", None, False, "closed"),
        ("fleet.example", None, False, "closed"),
        ("0.0.0.0", None, True, "open"),  # noqa: S104
        ("0.0.0.0", "enrol-me-please", False, "key"),  # noqa: S104
    ],
)
def test_enrolment_is_closed_beyond_loopback_unless_opened(
    tmp_path: Path, host: str, key: str | None, opened: bool, enrolment: str
) -> None:
    settings = make_settings("postgresql://unused", tmp_path, host=host, enroll_key=key, enroll_open=opened)
    assert settings.enrolment == enrolment


def test_enrolment_opens_only_by_an_explicit_setting(tmp_path: Path) -> None:
    env = {"FLEETBED_DATA_DIR": str(tmp_path), "FLEETBED_HOST": "0.0.0.0"}  # noqa: S104
    assert Settings.from_env(env).enrolment == "closed"
    assert Settings.from_env({**env, "FLEETBED_ENROLL_OPEN": "1"}).enrolment == "open"


async def test_a_closed_fleet_refuses_new_devices_and_lets_known_ones_back_in(
    pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    open_client = await aiohttp_client(create_app(make_settings(pg_url, tmp_path)))
    _, known = await log_in(open_client)
    closed = await aiohttp_client(create_app(make_settings(pg_url, tmp_path, host="0.0.0.0")))  # noqa: S104
    status, refused = await log_in(closed)
    assert status == 403
    assert "FLEETBED_ENROLL_KEY" in refused["message"]
    assert "FLEETBED_ENROLL_OPEN" in refused["message"]
    devices_before = await scalar(pg_url, "SELECT count(*) FROM device")
    status, _ = await log_in(closed, device_id=str(uuid.uuid4()))
    assert status == 403
    assert await scalar(pg_url, "SELECT count(*) FROM device") == devices_before, "no row for a refused device"
    status, back = await log_in(closed, device_id=known["device_id"], device_secret=known["device_secret"])
    assert status == 200
    assert back["device_id"] == known["device_id"]


async def test_logins_are_rate_limited_per_address_with_retry_after(
    pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(create_app(make_settings(pg_url, tmp_path, login_rate_per_s=0.2, login_burst=3)))
    statuses = [(await client.post("/login")).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = await client.post("/login")
    assert limited.status == 429
    assert int(limited.headers["Retry-After"]) >= 1
    body = await limited.json()
    assert body["error"] == "too_many_requests"
    assert "Retry-After" in body["message"]
    assert await scalar(pg_url, "SELECT count(*) FROM device") == 3


async def test_readings_older_than_the_age_limit_are_refused(
    pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    settings = make_settings(pg_url, tmp_path, max_reading_age_s=3600)
    client = await aiohttp_client(create_app(settings))
    _, device = await log_in(client)
    headers = {"Authorization": f"Bearer {device['token']}"}
    now = datetime.now(UTC)
    too_old = await client.post("/measurement", json=[reading(now - timedelta(minutes=10)),
                                                      reading(now - timedelta(hours=2))], headers=headers)  # fmt: skip
    assert too_old.status == 422
    body = await too_old.json()
    assert [field["field"] for field in body["fields"]] == ["[1].time"]
    assert "FLEETBED_MAX_READING_AGE_S" in body["fields"][0]["problem"]
    assert await scalar(pg_url, "SELECT count(*) FROM measurement") == 0, "all or nothing"
    recent = await client.post("/measurement", json=reading(now - timedelta(minutes=50)), headers=headers)
    assert recent.status == 201


def test_the_default_age_limit_holds_a_whole_offline_backlog() -> None:
    from _device import MAX_BACKLOG
    from _options import DEFAULT_DEVICE_INTERVAL_S

    assert DEFAULT_MAX_READING_AGE_S >= MAX_BACKLOG * DEFAULT_DEVICE_INTERVAL_S
