"""No acknowledged reading is lost and none is stored twice when the service or its database fails under load.

Devices post strictly increasing readings and retry each until it is acknowledged. After each fault the
database must hold every acknowledged reading exactly once, at most one unacknowledged reading per device (the
one in flight when the test stopped), and state and totals equal to a full scan.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from app.db.migrations import migrate
from app.db.stats import fleet_stats, fleet_stats_by_full_scan
from app.stack.embedded_db import EmbeddedPostgres
from tests.support.db import fetch
from tests.support.fleet_driver import DriverReport, drive
from tests.support.processes import free_port, running_fleetbed, wait_until_ready
from tests.support.proxy import cuttable_proxy
from tests.test_stats import assert_same_stats

DEVICES = 20
pytestmark = pytest.mark.slow


async def assert_exactly_once(url: str, report: DriverReport, fault: str) -> None:
    rows = await fetch(url, "SELECT device_id::text AS device_id, time FROM measurement")
    stored = {(r["device_id"], r["time"]) for r in rows}
    acknowledged = {(device, datetime.fromisoformat(moment)) for device, moment in report.acknowledged}
    lost = acknowledged - stored
    assert not lost, f"{len(lost)} acknowledged readings lost"
    extra_by_device: dict[str, int] = {}
    for device, _ in stored - acknowledged:
        extra_by_device[device] = extra_by_device.get(device, 0) + 1
    assert all(count <= 1 for count in extra_by_device.values()), "only the reading in flight may be unacknowledged"
    duplicates = await fetch(url, "SELECT count(*) - count(DISTINCT (device_id, time)) AS n FROM measurement")
    print(
        f"fault {fault}: acknowledged {len(acknowledged)}, lost {len(lost)}, stored twice {duplicates[0]['n']}, "
        f"stored but unacknowledged {sum(extra_by_device.values())}, 503s {report.statuses.get(503, 0)}, "
        f"connection errors {report.connection_errors}"
    )
    conn = await asyncpg.connect(url)
    try:
        assert_same_stats((await fleet_stats(conn, 48)).as_json(), (await fleet_stats_by_full_scan(conn, 48)).as_json())
    finally:
        await conn.close()


def service_env(database_url: str, port: int) -> dict[str, str]:
    return {
        "FLEETBED_DATABASE_URL": database_url,
        "FLEETBED_DATA_DIR": tempfile.mkdtemp(),
        "FLEETBED_PORT": str(port),
        "FLEETBED_DB_TIMEOUT_S": "2",
    }


async def answer_time(url: str) -> tuple[int, float, str | None]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return response.status, time.monotonic() - started, response.headers.get("Retry-After")


async def test_sigkill_of_the_service_and_a_restart(pg_url: str) -> None:
    port = free_port()
    env = service_env(pg_url, port)
    report, stop = DriverReport(), asyncio.Event()
    with running_fleetbed(["serve"], env, port) as first:
        fleet = asyncio.ensure_future(drive(f"http://127.0.0.1:{port}", DEVICES, stop, report))
        await asyncio.sleep(2.0)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)
    acknowledged_before = len(report.acknowledged)
    with running_fleetbed(["serve"], env, port):
        await asyncio.sleep(2.0)
        stop.set()
        await fleet
    assert acknowledged_before > 50
    assert len(report.acknowledged) > acknowledged_before, "devices carried on after the restart"
    assert report.connection_errors > 0, "the kill was felt"
    await assert_exactly_once(pg_url, report, "SIGKILL + restart")


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture
def own_postgres() -> Iterator[tuple[EmbeddedPostgres, str, int]]:
    """A server of this test's own, which it may crash."""
    data_dir = Path(tempfile.mkdtemp(prefix="fleetbed-fault-pg-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir)
    running = server.start()
    asyncio.run(_migrate(running.url))
    yield server, running.url, running.port
    server.stop()


async def test_postgresql_crash_and_recovery(own_postgres: tuple[EmbeddedPostgres, str, int]) -> None:
    server, url, database_port = own_postgres
    port = free_port()
    report, stop = DriverReport(), asyncio.Event()
    base = f"http://127.0.0.1:{port}"
    with running_fleetbed(["serve"], service_env(url, port), port) as service:
        fleet = asyncio.ensure_future(drive(base, DEVICES, stop, report))
        await asyncio.sleep(2.0)
        await asyncio.to_thread(server.stop_immediately)  # no checkpoint: recovery replays the WAL
        await asyncio.sleep(0.5)
        status, seconds, retry_after = await answer_time(f"{base}/readyz")
        assert (status, retry_after is not None) == (503, True)
        assert seconds < 3, "readiness answers quickly while the database is down"
        during = report.statuses.get(503, 0)
        await asyncio.sleep(2.0)
        assert report.statuses.get(503, 0) > during, "devices get 503 with Retry-After, not hangs"
        await asyncio.to_thread(server.start, database_port)
        await asyncio.to_thread(wait_until_ready, f"{base}/readyz", service, 60)
        recovered_from = len(report.acknowledged)
        await asyncio.sleep(2.0)
        stop.set()
        await fleet
    assert len(report.acknowledged) > recovered_from, "the service recovered by itself"
    await assert_exactly_once(url, report, "PostgreSQL crash + recovery")


async def test_database_unreachable_for_seconds(pg_url: str) -> None:
    host_port = pg_url.split("@", 1)[1].split("/", 1)[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    report, stop = DriverReport(), asyncio.Event()
    with cuttable_proxy("127.0.0.1", int(host_port.rsplit(":", 1)[1])) as proxy:
        proxied_url = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        with running_fleetbed(["serve"], service_env(proxied_url, port), port) as service:
            fleet = asyncio.ensure_future(drive(base, DEVICES, stop, report))
            await asyncio.sleep(2.0)
            proxy.cut()
            await asyncio.sleep(0.5)
            status, seconds, _ = await answer_time(f"{base}/readyz")
            assert status == 503
            assert seconds < 3
            await asyncio.sleep(4.0)
            proxy.restore()
            await asyncio.to_thread(wait_until_ready, f"{base}/readyz", service, 60)
            recovered_from = len(report.acknowledged)
            await asyncio.sleep(2.0)
            stop.set()
            await fleet
    assert report.statuses.get(503, 0) > 0
    assert len(report.acknowledged) > recovered_from
    await assert_exactly_once(pg_url, report, "database unreachable 4 s")
