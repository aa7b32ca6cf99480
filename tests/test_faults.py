"""No acknowledged reading is lost and none is stored twice when the service or its database fails under load.

Devices post strictly increasing readings and retry each until it is acknowledged. After each fault the
database must hold every acknowledged reading exactly once, at most one unacknowledged reading per device (the
one in flight when the test stopped), and state and totals equal to a full scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.db.migrations import migrate
from app.db.stats import fleet_stats, fleet_stats_by_full_scan
from app.stack.embedded_db import EmbeddedDatabaseError, EmbeddedPostgres
from tests.support.db import fetch
from tests.support.fleet_driver import DriverReport, drive
from tests.support.postgres import POSTGRES_15_BIN, postgres_15_missing
from tests.support.processes import free_port, running_fleetbed, wait_until_ready
from tests.support.proxy import cuttable_proxy
from tests.support.requirements import missing
from tests.test_stats import assert_same_stats

DEVICES = 20
pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(each_pg_url: str) -> str:
    """Every fault here is survived on the embedded PostgreSQL 18 and on PostgreSQL 15."""
    return each_pg_url


async def assert_exactly_once(
    url: str, report: DriverReport, fault: str, kept: set[tuple[str, str]] | None = None
) -> None:
    """Every acknowledged reading (of those in `kept`, when a restore rolled some back) is stored exactly once,
    and no device was ever answered 500."""
    assert report.statuses.get(500, 0) == 0, f"{report.statuses.get(500)} requests answered 500 under {fault}"
    rows = await fetch(url, "SELECT device_id::text AS device_id, time FROM measurement")
    stored = {(r["device_id"], r["time"]) for r in rows}
    expected = report.acknowledged if kept is None else kept
    acknowledged = {(device, datetime.fromisoformat(moment)) for device, moment in expected}
    lost = acknowledged - stored
    assert not lost, f"{len(lost)} acknowledged readings lost"
    extra_by_device: dict[str, int] = {}
    for device, _ in stored - acknowledged:
        extra_by_device[device] = extra_by_device.get(device, 0) + 1
    # In flight: the reading at the end, and with a restore the one whose acknowledgement came after the backup
    # that holds it (it was acknowledged as a duplicate once the server was back, so it is not in `kept`).
    in_flight = 1 if kept is None else 2
    assert all(n <= in_flight for n in extra_by_device.values()), "only readings in flight may be unacknowledged"
    duplicates = await fetch(url, "SELECT count(*) - count(DISTINCT (device_id, time)) AS n FROM measurement")
    assert duplicates[0]["n"] == 0
    print(
        f"fault {fault}: acknowledged {len(acknowledged)}, lost {len(lost)}, stored twice {duplicates[0]['n']}, "
        f"stored but unacknowledged {sum(extra_by_device.values())}, 503s {report.statuses.get(503, 0)}, "
        f"connection errors {report.connection_errors}, 500s {report.statuses.get(500, 0)}, "
        f"Retry-After {sorted(str(r) for r in report.retry_after)}"
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


@pytest.fixture(params=["postgresql", "postgresql15"])
def own_postgres(request: pytest.FixtureRequest) -> Iterator[tuple[EmbeddedPostgres, str, int]]:
    """A server of this test's own, which it may crash: the embedded PostgreSQL 18, then PostgreSQL 15."""
    binaries = None
    if request.param == "postgresql15":
        reason = postgres_15_missing()
        if reason is not None:
            missing(reason)
        binaries = POSTGRES_15_BIN
    data_dir = Path(tempfile.mkdtemp(prefix="fleetbed-fault-pg-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir, binaries)
    running = server.start()
    asyncio.run(_migrate(running.url))
    yield server, running.url, running.port
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)  # the backup of the restore test included


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


async def service_metric(base: str, name: str, labels: dict[str, str]) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@contextmanager
def small_filesystem(size_mib: int) -> Iterator[Path]:
    """A tmpfs of `size_mib` MiB, mounted for the block (needs root)."""
    if os.geteuid() != 0:
        missing("mounting a small filesystem for the disk-full fault needs root")
    mount_point = Path(tempfile.mkdtemp(prefix="fleetbed-fault-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        missing(f"cannot mount a tmpfs for the disk-full fault: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)
        mount_point.rmdir()


def fill(directory: Path) -> Path:
    """Write a file into `directory` until its filesystem is full; removing the file gives the space back."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096):  # megabytes, then the last partial one
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


@pytest.fixture
def postgres_with_full_data_disk() -> Iterator[tuple[EmbeddedPostgres, str, Path]]:
    """A server whose data directory is on a small filesystem of its own (its WAL on the ordinary disk)."""
    with small_filesystem(160) as disk:
        server = EmbeddedPostgres(disk / "fleetbed")
        server.start()
        server.stop()
        wal_home = Path(tempfile.mkdtemp(prefix="fleetbed-fault-wal-"))
        wal_home.chmod(0o755)
        subprocess.run(["mv", str(server.pgdata / "pg_wal"), str(wal_home / "pg_wal")], check=True)
        (server.pgdata / "pg_wal").symlink_to(wal_home / "pg_wal")
        running = server.start()
        asyncio.run(_migrate(running.url))
        try:
            yield server, running.url, disk
        finally:
            server.stop()
            shutil.rmtree(wal_home, ignore_errors=True)


async def test_disk_full_under_the_data_directory(
    postgres_with_full_data_disk: tuple[EmbeddedPostgres, str, Path],
) -> None:
    _, url, disk = postgres_with_full_data_disk
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    report, stop = DriverReport(), asyncio.Event()
    with running_fleetbed(["serve"], service_env(url, port), port):
        fleet = asyncio.ensure_future(drive(base, DEVICES, stop, report))
        await asyncio.sleep(2.0)
        filler = await asyncio.to_thread(fill, disk)
        await asyncio.sleep(4.0)
        full_503s = report.statuses.get(503, 0)
        disk_errors = await service_metric(
            base, "fleetbed_database_errors_total", {"sqlstate_class": "53", "status": "503"}
        )
        filler.unlink()  # the operator frees space
        recovered_from = len(report.acknowledged)
        await asyncio.sleep(2.0)
        stop.set()
        await fleet
    assert disk_errors > 0, "the database reported a full disk (SQLSTATE class 53)"
    assert full_503s > 0
    assert "10" in report.retry_after, "a full disk asks devices to come back in 10 s"
    assert len(report.acknowledged) > recovered_from, "the service recovered by itself once space returned"
    await assert_exactly_once(url, report, "disk full under the data directory")


def copy_cluster(source: Path, target: Path) -> None:
    """A file-level copy of a stopped cluster, owners kept (what restoring a base backup amounts to)."""
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


async def test_database_restored_from_an_older_backup_under_running_devices(
    own_postgres: tuple[EmbeddedPostgres, str, int],
) -> None:
    """Devices registered after the backup have valid tokens but no row: they get 401, log in again and carry on;
    the devices the backup knows never see anything but 201 and 503. Readings acknowledged between the backup and
    the restore are rolled back by the restore itself; every other acknowledged reading is there exactly once."""
    server, url, database_port = own_postgres
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    backup = server.pgdata.with_name("backup")
    known, newer, stop = DriverReport(), DriverReport(), asyncio.Event()
    with running_fleetbed(["serve"], service_env(url, port), port) as service:
        fleet = [asyncio.ensure_future(drive(base, DEVICES // 2, stop, known))]
        await asyncio.sleep(2.0)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(0.5)  # answers to what committed before the stop reach their devices
        in_backup = set(known.acknowledged)
        await asyncio.to_thread(copy_cluster, server.pgdata, backup)
        await asyncio.to_thread(server.start, database_port)
        fleet.append(asyncio.ensure_future(drive(base, DEVICES // 2, stop, newer)))
        await asyncio.sleep(2.0)
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(0.5)
        # While the server is down nothing is acknowledged: what follows is acknowledged by the restored database.
        restored_at = known.acknowledged | newer.acknowledged
        rolled_back = restored_at - in_backup
        await asyncio.to_thread(copy_cluster, backup, server.pgdata)
        await asyncio.to_thread(server.start, database_port)
        await asyncio.to_thread(wait_until_ready, f"{base}/readyz", service, 60)
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*fleet)
    after_restore = (known.acknowledged | newer.acknowledged) - restored_at
    assert newer.relogins >= DEVICES // 2, "every device the backup does not know was told to log in again"
    assert known.relogins == 0
    assert set(known.statuses) <= {201, 503}, known.statuses
    assert {device for device, _ in after_restore} >= {device for device, _ in newer.acknowledged}
    both = DriverReport(
        acknowledged=known.acknowledged | newer.acknowledged,
        statuses={s: known.statuses.get(s, 0) + newer.statuses.get(s, 0) for s in {*known.statuses, *newer.statuses}},
        retry_after=known.retry_after | newer.retry_after,
        connection_errors=known.connection_errors + newer.connection_errors,
    )
    print(f"restore: {len(rolled_back)} acknowledged readings rolled back by the restore, {newer.relogins} relogins")
    await assert_exactly_once(url, both, "restore from an older backup", kept=in_backup | after_restore)


@contextlib.asynccontextmanager
async def state_rows_locked(url: str) -> AsyncIterator[None]:
    """Another session holding every `device_state` row (FOR UPDATE) until the block ends."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET statement_timeout = 0")  # the lock holder is not the one to be cancelled
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM device_state FOR UPDATE")
            yield
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("statement_timeout", "fault"),
    [(None, "state rows locked for 5 s"), ("500ms", "statement timeout (500 ms) while the state rows are locked")],
)
async def test_state_rows_locked_for_seconds(pg_url: str, statement_timeout: str | None, fault: str) -> None:
    """A lock held on the state rows: requests wait, then the statement is cancelled (by the service's own
    command timeout, or the server's statement_timeout) and the device is told 503; after the lock, 201s."""
    database = pg_url.rsplit("/", 1)[1]
    if statement_timeout is not None:
        await fetch(pg_url, f"ALTER DATABASE {database} SET statement_timeout = '{statement_timeout}'")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    report, stop = DriverReport(), asyncio.Event()
    with running_fleetbed(["serve"], service_env(pg_url, port), port):
        fleet = asyncio.ensure_future(drive(base, DEVICES, stop, report))
        await asyncio.sleep(2.0)
        async with state_rows_locked(pg_url):
            await asyncio.sleep(5.0)
        cancelled = await service_metric(
            base, "fleetbed_database_errors_total", {"sqlstate_class": "57", "status": "503"}
        )
        released_at = len(report.acknowledged)
        await asyncio.sleep(2.0)
        stop.set()
        await fleet
    if statement_timeout is not None:
        await fetch(pg_url, f"ALTER DATABASE {database} RESET statement_timeout")  # for the checks below
    assert report.statuses.get(503, 0) > 0, "devices waiting on the lock were told to come back"
    if statement_timeout is not None:
        assert cancelled > 0, "the server cancelled statements (SQLSTATE 57014)"
    assert len(report.acknowledged) > released_at
    await assert_exactly_once(pg_url, report, fault)


@pytest.fixture
def postgres_with_small_wal_disk() -> Iterator[tuple[EmbeddedPostgres, str, int, Path]]:
    """A server whose WAL directory is on a small filesystem of its own (its data on the ordinary disk)."""
    with small_filesystem(96) as disk:
        data_dir = Path(tempfile.mkdtemp(prefix="fleetbed-fault-pg-"))
        data_dir.chmod(0o755)
        server = EmbeddedPostgres(data_dir)
        server.start()
        server.stop()
        subprocess.run(["mv", str(server.pgdata / "pg_wal"), str(disk / "pg_wal")], check=True)
        (server.pgdata / "pg_wal").symlink_to(disk / "pg_wal")
        running = server.start()
        asyncio.run(_migrate(running.url))
        try:
            yield server, running.url, running.port, disk
        finally:
            with contextlib.suppress(EmbeddedDatabaseError):
                server.stop_immediately()
            shutil.rmtree(data_dir, ignore_errors=True)


async def switch_wal_until_refused(url: str, timeout_s: float = 20.0) -> None:
    """Make the server start new WAL segments until it cannot (a full WAL disk stops PostgreSQL with a PANIC)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(url, timeout=2)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS wal_filler (x int); INSERT INTO wal_filler VALUES (1)")
                await conn.execute("SELECT pg_switch_wal()")
            finally:
                await conn.close(timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return
    raise AssertionError("the server kept writing WAL on a full disk")


def start_again(server: EmbeddedPostgres, port: int, timeout_s: float = 60.0) -> None:
    """Bring the server back once space returned: it may still be recovering by itself, or have given up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            server.start(port)
            return
        except EmbeddedDatabaseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


async def test_disk_full_under_the_wal_directory(
    postgres_with_small_wal_disk: tuple[EmbeddedPostgres, str, int, Path],
) -> None:
    """PostgreSQL cannot run without room for WAL: it stops (PANIC), the devices get 503 while it is down, and
    once space is back and the server restarted (recovery replays the WAL), nothing acknowledged is missing."""
    server, url, database_port, disk = postgres_with_small_wal_disk
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    report, stop = DriverReport(), asyncio.Event()
    with running_fleetbed(["serve"], service_env(url, port), port) as service:
        fleet = asyncio.ensure_future(drive(base, DEVICES, stop, report))
        await asyncio.sleep(2.0)
        filler = await asyncio.to_thread(fill, disk)
        await switch_wal_until_refused(url)
        await asyncio.sleep(2.0)
        while_full = report.statuses.get(503, 0)
        filler.unlink()
        await asyncio.to_thread(start_again, server, database_port)
        await asyncio.to_thread(wait_until_ready, f"{base}/readyz", service, 60)
        recovered_from = len(report.acknowledged)
        await asyncio.sleep(2.0)
        stop.set()
        await fleet
    assert while_full > 0, "devices were told 503 while the WAL disk was full"
    assert len(report.acknowledged) > recovered_from
    await assert_exactly_once(url, report, "disk full under the WAL directory")
