"""Tokens and roles: only a valid device token acts as that device, only the operator token steers devices."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.errors import Unauthorized
from app.server import create_app
from app.settings import Settings, SettingsError
from app.tokens import TokenVerifier, issue_device_token, verify_device_token
from tests.conftest import OPERATOR_TOKEN, SECRET, AiohttpClient, make_settings
from tests.support.db import stored_rows
from tests.support.devices import login, reading


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tamper(token: str) -> str:
    version, _, expiry, signature = token.split(".")
    other_device = uuid.uuid4().hex
    return ".".join([version, other_device, expiry, signature])


def forged_tokens(token: str) -> dict[str, str]:
    version, device_hex, expiry, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return {
        "other-device-id": tamper(token),
        "later-expiry": ".".join([version, device_hex, str(int(expiry) + 3600), signature]),
        "flipped-signature-bit": ".".join([version, device_hex, expiry, flipped]),
        "truncated": token[:-5],
        "no-signature": ".".join([version, device_hex, expiry, ""]),
        "garbage": "v1.not.a.token",
        "other-secret": issue_device_token(b"o" * 48, uuid.UUID(hex=device_hex), 3600).token,
        "huge": "v1." + "a" * 5000,
        "wrong-version": ".".join(["v0", device_hex, expiry, signature]),
    }


async def test_requests_without_a_token_are_401_with_a_challenge(client: TestClient) -> None:
    for method, path in (("GET", "/command"), ("POST", "/measurement"), ("GET", "/stats")):
        response = await client.request(method, path, json=reading())
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["error"] == "unauthorized"


async def test_non_bearer_schemes_are_401(client: TestClient) -> None:
    response = await client.get("/command", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status == 401
    assert "Bearer" in (await response.json())["message"]


async def test_forged_and_tampered_tokens_are_401_and_write_nothing(client: TestClient, settings: Settings) -> None:
    device = await login(client)
    before = await stored_rows(settings.database_url or "")
    for name, token in forged_tokens(device.token).items():
        command = await client.get("/command", headers=bearer(token))
        assert command.status == 401, name
        posted = await client.post("/measurement", json=reading(), headers=bearer(token))
        assert posted.status == 401, name
        body = await posted.json()
        assert body["error"] == "unauthorized"
        assert device.token not in body["message"]
    assert await stored_rows(settings.database_url or "") == before


async def test_expired_token_is_401_saying_log_in_again(client: TestClient) -> None:
    device = await login(client)
    expired = issue_device_token(SECRET, device.device_id, ttl_s=60, now=time.time() - 120)
    response = await client.get("/command", headers=bearer(expired.token))
    assert response.status == 401
    assert "expired" in (await response.json())["message"]


async def test_device_token_cannot_use_operator_endpoints(client: TestClient) -> None:
    device = await login(client)
    response = await client.put(f"/devices/{device.device_id}/command", json={"charge": True}, headers=device.headers)
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"


async def test_operator_token_cannot_act_as_a_device(client: TestClient) -> None:
    response = await client.post("/measurement", json=reading(), headers=bearer(OPERATOR_TOKEN))
    assert response.status == 403
    stats = await client.get("/stats", headers=bearer(OPERATOR_TOKEN))
    assert stats.status == 200, "operators may read statistics"


async def test_wrong_operator_token_is_401(client: TestClient) -> None:
    device = await login(client)
    response = await client.put(
        f"/devices/{device.device_id}/command", json={"charge": True}, headers=bearer(OPERATOR_TOKEN + "x")
    )
    assert response.status == 401


@pytest.fixture
async def closed_fleet(backend_url: str, tmp_path: Path, aiohttp_client: AiohttpClient) -> TestClient:
    settings = make_settings(backend_url, tmp_path, enroll_key="enrol-me-please")
    return await aiohttp_client(create_app(settings))


async def test_enrolment_key_closes_the_fleet(closed_fleet: TestClient, backend_url: str) -> None:
    without = await closed_fleet.post("/login")
    assert without.status == 401
    assert "enroll_key" in (await without.json())["message"]
    wrong = await closed_fleet.post("/login", json={"enroll_key": "guess-guess"})
    assert wrong.status == 403
    assert "enrol-me-please" not in await wrong.text()
    assert (await stored_rows(backend_url))["device"] == 0
    right = await closed_fleet.post("/login", json={"enroll_key": "enrol-me-please"})
    assert right.status == 200
    assert (await stored_rows(backend_url))["device"] == 1


def test_token_round_trip_and_clock() -> None:
    device_id = uuid.uuid4()
    token = issue_device_token(SECRET, device_id, ttl_s=60, now=1_000_000)
    assert verify_device_token(SECRET, token.token, now=1_000_059) == device_id
    with pytest.raises(Unauthorized, match="expired"):
        verify_device_token(SECRET, token.token, now=1_000_060)
    with pytest.raises(Unauthorized, match="signature"):
        verify_device_token(b"x" * 48, token.token, now=1_000_000)


def test_secrets_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = Settings.from_env({"FLEETBED_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"FLEETBED_DATA_DIR": str(tmp_path)})
    assert first.secret == second.secret
    assert first.operator_token == second.operator_token
    for name in ("token-signing-key", "operator-token"):
        assert (tmp_path / "secrets" / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert first.operator_token not in repr(first)
    assert str(first.secret) not in repr(first)


def test_secrets_from_the_environment_win(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"FLEETBED_DATA_DIR": str(tmp_path), "FLEETBED_SECRET": "k" * 40, "FLEETBED_OPERATOR_TOKEN": "op" * 10}
    )
    assert settings.secret == b"k" * 40
    assert settings.operator_token == "op" * 10
    assert not (tmp_path / "secrets" / "operator-token").exists()


def test_several_service_hosts_refuse_to_start_without_shared_secrets(tmp_path: Path) -> None:
    several = {"FLEETBED_DATA_DIR": str(tmp_path), "FLEETBED_SERVICE_HOSTS": "3"}
    with pytest.raises(SettingsError, match="FLEETBED_SECRET and FLEETBED_OPERATOR_TOKEN"):
        Settings.from_env(several)
    with pytest.raises(SettingsError, match="set FLEETBED_OPERATOR_TOKEN to the same value"):
        Settings.from_env({**several, "FLEETBED_SECRET": "k" * 40})
    assert not (tmp_path / "secrets").exists(), "no host-local secret was generated"
    shared = Settings.from_env({**several, "FLEETBED_SECRET": "k" * 40, "FLEETBED_OPERATOR_TOKEN": "op" * 10})
    assert shared.secret == b"k" * 40


def test_remembered_tokens_still_expire_and_forgeries_are_never_remembered() -> None:
    verifier = TokenVerifier(SECRET)
    device_id = uuid.uuid4()
    token = issue_device_token(SECRET, device_id, ttl_s=60, now=1_000_000).token
    assert verifier.verify(token, now=1_000_000) == device_id
    assert verifier.verify(token, now=1_000_030) == device_id, "answered from memory"
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(token, now=1_000_060)
    forged = tamper(token)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verifier.verify(forged, now=1_000_000)
