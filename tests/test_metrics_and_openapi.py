"""/metrics counts what happened with bounded labels; /openapi.json documents every route the app serves."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.handlers.devices import MAX_METADATA_KEY_CHARS, MAX_METADATA_KEYS, MAX_METADATA_TEXT_CHARS
from app.handlers.operator import MAX_FLUSH_PERCENT, MAX_INTERVAL_S
from app.handlers.runs import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, MAX_NAME_CHARS
from app.handlers.stats import DEFAULT_HOURS, MAX_HOURS
from app.keys import METRICS
from app.limits import MAX_BATCH_READINGS, NUMERIC_FIELDS
from app.openapi import openapi_document
from app.settings import Settings
from tests.support.devices import login, reading


async def test_requests_are_counted_by_route_template(pg_client: TestClient) -> None:
    devices = [await login(pg_client) for _ in range(3)]
    for device in devices:
        await pg_client.get("/command", headers=device.headers)
        await pg_client.post("/measurement", json=reading(), headers=device.headers)
    await pg_client.put(f"/devices/{devices[0].device_id}/command", json={}, headers=devices[0].headers)
    registry = pg_client.app[METRICS].registry

    def requests(method: str, route: str, status: str) -> float | None:
        return registry.get_sample_value(
            "fleetbed_http_requests_total", {"method": method, "route": route, "status": status}
        )

    assert requests("POST", "/login", "200") == 3
    assert requests("GET", "/command", "200") == 3
    assert requests("POST", "/measurement", "201") == 3
    assert requests("PUT", "/devices/{device_id}/command", "403") == 1
    assert registry.get_sample_value("fleetbed_readings_stored_total") == 3
    assert (
        registry.get_sample_value(
            "fleetbed_http_request_duration_seconds_count", {"method": "GET", "route": "/command"}
        )
        == 3
    )

    text = await (await pg_client.get("/metrics")).text()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"fleetbed_http_requests", "process_cpu_seconds", "python_gc_collections", "python_info"} <= families
    for device in devices:
        assert str(device.device_id) not in text, "device ids never become label values"


async def test_unmatched_paths_share_one_label(pg_client: TestClient) -> None:
    for n in range(5):
        await pg_client.get(f"/probe/{n}")
    registry = pg_client.app[METRICS].registry
    assert (
        registry.get_sample_value(
            "fleetbed_http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}
        )
        == 5
    )


async def test_openapi_documents_every_route(pg_client: TestClient) -> None:
    document = await (await pg_client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = {
        (route.resource.canonical, route.method)
        for route in pg_client.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert served == documented
    measurement = document["components"]["schemas"]["Measurement"]
    assert measurement["additionalProperties"] is False
    assert measurement["properties"]["water_level"] == {
        "type": "integer", "minimum": 0, "maximum": 100, "description": "Fill level, percent of the tank (0..100).",
    }  # fmt: skip


def test_openapi_publishes_the_limits_the_service_enforces() -> None:
    """Every limit in the document is the constant the service checks (app.limits, or the handler's own)."""
    document = openapi_document()
    schemas, paths = document["components"]["schemas"], document["paths"]
    for name, (kind, low, high) in NUMERIC_FIELDS.items():
        published = schemas["Measurement"]["properties"][name]
        assert (published["type"], published["minimum"], published["maximum"]) == (
            "integer" if kind == "int" else "number", low, high,
        )  # fmt: skip
    array = paths["/measurement"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert array["maxItems"] == MAX_BATCH_READINGS == Settings.__dataclass_fields__["max_batch"].default
    login_body = paths["/login"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    metadata = login_body["properties"]["metadata"]
    assert metadata["maxProperties"] == MAX_METADATA_KEYS
    assert metadata["propertyNames"]["maxLength"] == MAX_METADATA_KEY_CHARS
    assert metadata["additionalProperties"]["maxLength"] == MAX_METADATA_TEXT_CHARS
    command = schemas["Command"]["properties"]
    assert (command["interval_s"]["maximum"], command["flush"]["maximum"]) == (MAX_INTERVAL_S, MAX_FLUSH_PERCENT)
    run_body = paths["/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert run_body["properties"]["name"]["maxLength"] == MAX_NAME_CHARS
    (limit,) = paths["/runs"]["get"]["parameters"]
    assert (limit["schema"]["maximum"], limit["schema"]["default"]) == (MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT)
    (hours,) = paths["/stats"]["get"]["parameters"]
    assert (hours["schema"]["maximum"], hours["schema"]["default"]) == (MAX_HOURS, DEFAULT_HOURS)
