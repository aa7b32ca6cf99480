"""/metrics counts what happened with bounded labels; /openapi.json documents every route the app serves."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.keys import METRICS
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
