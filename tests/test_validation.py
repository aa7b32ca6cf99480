"""Every rejection returns the documented status and JSON error, names what is wrong, and stores nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.settings import Settings
from tests.support.db import stored_rows
from tests.support.devices import BASE_TIME, login, reading, readings


async def post_raw(client: TestClient, headers: dict[str, str], body: bytes, content_type: str) -> Any:
    return await client.post("/measurement", data=body, headers={**headers, "Content-Type": content_type})


def field_names(body: dict[str, Any]) -> set[str]:
    return {item["field"] for item in body.get("fields", [])}


INVALID_READINGS = [
    pytest.param({"charge_now": True}, "charge_now", id="boolean-for-integer"),
    pytest.param({"ambient_temp": False}, "ambient_temp", id="boolean-for-number"),
    pytest.param({"charge_now": 1.5}, "charge_now", id="fraction-for-integer"),
    pytest.param({"charge_now": "80"}, "charge_now", id="string-for-integer"),
    pytest.param({"water_temp": None}, "water_temp", id="null"),
    pytest.param({"charge_now": -1}, "charge_now", id="negative-charge"),
    pytest.param({"charge_now": 1001, "charge_full": 1000}, "charge_now", id="charge-above-full"),
    pytest.param({"charge_full": 0}, "charge_full", id="zero-capacity"),
    pytest.param({"water_level": 101}, "water_level", id="level-over-100"),
    pytest.param({"ambient_temp": 500.0}, "ambient_temp", id="ambient-out-of-range"),
    pytest.param({"water_temp": -300}, "water_temp", id="water-below-range"),
    pytest.param({"charge_rate": 1e300}, "charge_rate", id="rate-out-of-range"),
    pytest.param({"charge_now": 2**40, "charge_full": 2**41}, "charge_now", id="int-overflow"),
    pytest.param({"time": "2026-11-20T08:00:00"}, "time", id="time-without-offset"),
    pytest.param({"time": "2026-11-20"}, "time", id="date-only"),
    pytest.param({"time": "20 Nov 2026 08:00 +0000"}, "time", id="not-rfc3339"),
    pytest.param({"time": "2026-02-30T08:00:00Z"}, "time", id="impossible-date"),
    pytest.param({"time": 1763625600}, "time", id="epoch-number"),
    pytest.param({"time": "1999-12-31T23:59:59Z"}, "time", id="before-2000"),
    pytest.param({"firmware": "1.2"}, "firmware", id="unknown-field"),
]


@pytest.mark.parametrize(("change", "bad_field"), INVALID_READINGS)
async def test_invalid_reading_is_422_naming_the_field_and_nothing_is_stored(
    client: TestClient, settings: Settings, change: dict[str, Any], bad_field: str
) -> None:
    device = await login(client)
    before = await stored_rows(settings.database_url or "")
    response = await client.post("/measurement", json=reading(**change), headers=device.headers)
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "invalid_fields"
    assert bad_field in field_names(body)
    assert bad_field in body["message"]
    assert await stored_rows(settings.database_url or "") == before


async def test_missing_field_is_named(client: TestClient) -> None:
    device = await login(client)
    incomplete = reading()
    del incomplete["water_level"]
    response = await client.post("/measurement", json=incomplete, headers=device.headers)
    assert response.status == 422
    assert field_names(await response.json()) == {"water_level"}


async def test_time_more_than_five_minutes_ahead_is_rejected(client: TestClient) -> None:
    device = await login(client)
    now = datetime.now(UTC)
    late = await client.post("/measurement", json=reading(now + timedelta(minutes=10)), headers=device.headers)
    assert late.status == 422
    assert "future" in (await late.json())["message"]
    near = await client.post("/measurement", json=reading(now + timedelta(minutes=4)), headers=device.headers)
    assert near.status == 201


async def test_one_bad_reading_rejects_the_whole_batch(client: TestClient, settings: Settings) -> None:
    device = await login(client)
    batch = readings(50)
    batch[37]["water_level"] = 250
    before = await stored_rows(settings.database_url or "")
    response = await client.post("/measurement", json=batch, headers=device.headers)
    assert response.status == 422
    assert field_names(await response.json()) == {"[37].water_level"}
    assert await stored_rows(settings.database_url or "") == before


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param(b"{", "application/json", 400, "bad_request", id="truncated-json"),
        pytest.param(b"", "application/json", 400, "bad_request", id="empty"),
        pytest.param(b'{"water_temp": NaN}', "application/json", 400, "bad_request", id="nan"),
        pytest.param(b'{"water_temp": Infinity}', "application/json", 400, "bad_request", id="infinity"),
        pytest.param(b'{"water_temp": 1e309}', "application/json", 400, "bad_request", id="overflow-1e309"),
        pytest.param(b'{"time": "\xff\xfe"}', "application/json", 400, "bad_request", id="invalid-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "bad_request", id="deep-nesting"),
        pytest.param(b"time=now", "application/x-www-form-urlencoded", 415, "unsupported_media_type", id="form"),
        pytest.param(b'{"time": 1}', "text/plain", 415, "unsupported_media_type", id="text-plain"),
        pytest.param(b"[]", "application/json", 422, "invalid_fields", id="empty-array"),
        pytest.param(b'"reading"', "application/json", 422, "invalid_fields", id="string-document"),
        pytest.param(b"[1, 2]", "application/json", 422, "invalid_fields", id="array-of-numbers"),
    ],
)
async def test_malformed_bodies_get_the_documented_status(
    client: TestClient, settings: Settings, body: bytes, content_type: str, status: int, code: str
) -> None:
    device = await login(client)
    before = await stored_rows(settings.database_url or "")
    response = await post_raw(client, device.headers, body, content_type)
    assert response.status == status
    assert response.content_type == "application/json"
    error = await response.json()
    assert error["error"] == code
    assert error["message"]
    assert await stored_rows(settings.database_url or "") == before


async def test_body_over_the_size_limit_is_413(client: TestClient) -> None:
    device = await login(client)
    oversized = io.BytesIO(b" " * (1024 * 1024 + 1))
    response = await client.post(
        "/measurement", data=oversized, headers={**device.headers, "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"] == "payload_too_large"


async def test_array_over_the_batch_limit_is_413(client: TestClient, settings: Settings) -> None:
    device = await login(client)
    before = await stored_rows(settings.database_url or "")
    response = await client.post("/measurement", json=readings(1001), headers=device.headers)
    assert response.status == 413
    assert "1000" in (await response.json())["message"]
    assert await stored_rows(settings.database_url or "") == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device_id": "not-a-uuid"}, "device_id"),
        ({"device_id": 42}, "device_id"),
        ({"metadata": "kettle"}, "metadata"),
        ({"metadata": {"site": "x" * 300}}, "metadata.site"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata.nested"),
        ({"role": "operator"}, "role"),
    ],
)
async def test_invalid_login_is_422_and_registers_nothing(
    client: TestClient, settings: Settings, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/login", json=body)
    assert response.status == 422
    assert field in field_names(await response.json())
    assert (await stored_rows(settings.database_url or ""))["device"] == 0


async def test_login_body_that_is_not_an_object_is_400(client: TestClient) -> None:
    response = await client.post("/login", json=[1, 2, 3])
    assert response.status == 400
    assert (await response.json())["error"] == "bad_request"


async def test_unknown_route_and_wrong_method_are_json(client: TestClient) -> None:
    missing = await client.get("/no/such/thing")
    assert missing.status == 404
    assert (await missing.json())["error"] == "not_found"
    wrong = await client.delete("/measurement")
    assert wrong.status == 405
    assert (await wrong.json())["error"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


async def test_stats_hours_parameter_is_validated(client: TestClient) -> None:
    device = await login(client)
    for bad in ("0", "-1", "abc", "100000"):
        response = await client.get("/stats", params={"hours": bad}, headers=device.headers)
        assert response.status == 422
        assert field_names(await response.json()) == {"hours"}


async def test_valid_time_forms_are_accepted(client: TestClient) -> None:
    device = await login(client)
    forms = [
        BASE_TIME.strftime("%Y-%m-%dT%H:00:00Z"),
        BASE_TIME.strftime("%Y-%m-%dt%H:00:01z"),
        (BASE_TIME + timedelta(hours=1)).strftime("%Y-%m-%d %H:00:02+01:00"),
        (BASE_TIME - timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:03.123456789-05:30"),
    ]
    for form in forms:
        response = await client.post("/measurement", json=reading(form), headers=device.headers)
        assert response.status == 201, (form, await response.text())
    assert BASE_TIME.tzinfo is UTC


async def test_integral_numbers_written_as_floats_are_integers(client: TestClient) -> None:
    device = await login(client)
    response = await client.post(
        "/measurement", json=reading(charge_now=80.0, charge_full=100.0, water_level=61.0), headers=device.headers
    )
    assert response.status == 201, await response.text()
    stats = await (await client.get("/stats", headers=device.headers)).json()
    assert (stats["total_battery_charge"], stats["total_water_volume"]) == (80, 61)


async def test_tiny_numbers_do_not_break_the_statistics(client: TestClient) -> None:
    device = await login(client)
    tiny = (5e-324, -2.2250738585072014e-308, 1e-200)
    for n, value in enumerate(tiny):
        sent = reading(BASE_TIME + timedelta(seconds=n), water_temp=value, ambient_temp=value)
        response = await client.post("/measurement", json=sent, headers=device.headers)
        assert response.status == 201, await response.text()
    stats = await (await client.get("/stats", headers=device.headers)).json()
    assert stats["measurements"] == len(tiny)
    assert abs(stats["mean_water_temp_by_hour"][-1]["mean"]) < 1e-100


async def test_a_json_null_body_is_not_an_empty_login(client: TestClient) -> None:
    response = await client.post("/login", data=b"null", headers={"Content-Type": "application/json"})
    assert response.status == 400
