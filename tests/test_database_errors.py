"""Database errors by class, provoked for real on PostgreSQL: a request whose rows fail is answered alone, server
conditions that pass are 503 + Retry-After (counted by SQLSTATE class), and only bugs are 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from app.database_errors import ArgumentError, DatabaseFaults, classify
from app.db.readings import Reading
from app.errors import InternalError
from app.keys import INGEST, METRICS
from app.server import create_app
from app.tokens import issue_device_token
from tests.conftest import SECRET, AiohttpClient, make_settings
from tests.support.db import scalar
from tests.support.devices import Device, login, reading


def now_reading(seconds_ago: float = 0) -> dict[str, object]:
    return reading(datetime.now(UTC) - timedelta(seconds=seconds_ago))


async def registered_devices(url: str, count: int) -> list[Device]:
    """Devices registered straight in the database, with tokens signed by the tests' key."""
    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO device (id) SELECT unnest($1::uuid[])", ids)
    finally:
        await conn.close()
    return [Device(i, issue_device_token(SECRET, i, 3600).token) for i in ids]


@asynccontextmanager
async def table_locked(url: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """Another session holding an exclusive lock on `table` until the block ends."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET statement_timeout = 0; SET lock_timeout = 0")  # the holder is never cancelled
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield conn
        await transaction.rollback()
    finally:
        await conn.close()


async def database_setting(url: str, name: str, value: str) -> None:
    """Set a parameter for every new session of this test's database (the app's pool is created after it)."""
    database = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"ALTER DATABASE {database} SET {name} = '{value}'")
    finally:
        await conn.close()


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached within {timeout_s} s")


def errors_counted(client: TestClient, sqlstate_class: str, status: str) -> float:
    registry = client.app[METRICS].registry
    labels = {"sqlstate_class": sqlstate_class, "status": status}
    return registry.get_sample_value("fleetbed_database_errors_total", labels) or 0.0


async def test_a_device_whose_row_is_gone_gets_401_and_its_batch_neighbours_201(
    each_pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """On PostgreSQL 18 and 15 (on both, one autocommitted statement per batch)."""
    pg_url = each_pg_url
    client = await aiohttp_client(create_app(make_settings(pg_url, tmp_path, ingest_writers=1)))
    healthy = [await login(client) for _ in range(39)]
    ghost = await login(client)
    await scalar(pg_url, "DELETE FROM device WHERE id = $1 RETURNING 1", ghost.device_id)  # a restore, say
    writer = client.app[INGEST]
    async with table_locked(pg_url, "fleet_totals"):
        first = asyncio.ensure_future(client.post("/measurement", json=now_reading(5), headers=healthy[0].headers))
        await until(lambda: bool(writer._writing[0]))
        # The writer is stuck on the first request: all 40 below queue up and are taken as one batch.
        posts = [
            asyncio.ensure_future(client.post("/measurement", json=now_reading(), headers=device.headers))
            for device in [*healthy[:20], ghost, *healthy[20:]]
        ]
        await until(lambda: writer.queued_readings == 40)
    assert (await first).status == 201
    responses = [await post for post in posts]
    statuses = [r.status for r in responses]
    assert statuses[20] == 401, await responses[20].text()
    assert responses[20].headers["WWW-Authenticate"].startswith("Bearer")
    assert "log in again" in (await responses[20].json())["message"]
    assert statuses[:20] + statuses[21:] == [201] * 39
    assert await scalar(pg_url, "SELECT count(*) FROM measurement WHERE device_id <> $1", ghost.device_id) == 40
    assert await scalar(pg_url, "SELECT count(*) FROM measurement WHERE device_id = $1", ghost.device_id) == 0
    # The device does what a 401 tells it: it logs in again, is registered again, and its readings are taken.
    again = await login(client, device_id=str(ghost.device_id))
    assert (await client.post("/measurement", json=now_reading(), headers=again.headers)).status == 201


async def test_an_argument_the_driver_cannot_encode_is_a_500_for_its_request_only(pg_client: TestClient) -> None:
    """asyncpg.DataError means a bug of ours (validation let something through): never "database unavailable"."""
    good, bad = await login(pg_client), await login(pg_client)
    writer = pg_client.app[INGEST]
    sent = now_reading()
    valid = Reading(datetime.now(UTC), 800, 1000, -12.5, 21.5, 64.0, 70)
    overflow = valid._replace(charge_now=2**40)  # validation would refuse it; the writer must not trust that
    results = await asyncio.gather(
        writer.submit(good.device_id, [valid]), writer.submit(bad.device_id, [overflow]), return_exceptions=True
    )
    assert not isinstance(results[0], BaseException)
    assert results[0].inserted == 1
    assert isinstance(results[1], InternalError)
    assert errors_counted(pg_client, "22", "500") == 1
    assert errors_counted(pg_client, "none", "503") == 0
    assert (await pg_client.post("/measurement", json=sent, headers=good.headers)).status == 201


@pytest.mark.parametrize(
    ("setting", "value", "locked", "sqlstate_class", "retry_after", "words"),
    [
        ("default_transaction_read_only", "on", None, "25", "10", "read-only"),
        ("statement_timeout", "300ms", "fleet_totals", "57", "2", "timed out"),
        ("lock_timeout", "300ms", "fleet_totals", "55", "2", "lock"),
    ],
)
async def test_server_conditions_that_pass_are_503_with_retry_after(
    pg_url: str,
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    setting: str,
    value: str,
    locked: str | None,
    sqlstate_class: str,
    retry_after: str,
    words: str,
) -> None:
    devices = await registered_devices(pg_url, 3)
    await database_setting(pg_url, setting, value)
    client = await aiohttp_client(create_app(make_settings(pg_url, tmp_path)))

    async def post_all() -> list[tuple[int, str | None, str]]:
        responses = await asyncio.gather(
            *(client.post("/measurement", json=now_reading(), headers=d.headers) for d in devices)
        )
        return [(r.status, r.headers.get("Retry-After"), (await r.json())["message"]) for r in responses]

    if locked is None:
        answers = await post_all()
        login_response = await client.post("/login")
        assert login_response.status == 503
        assert login_response.headers["Retry-After"] == retry_after
    else:
        async with table_locked(pg_url, locked):
            answers = await post_all()
    for status, header, message in answers:
        assert (status, header) == (503, retry_after)
        assert words in message
    assert errors_counted(client, sqlstate_class, "503") >= 1
    assert errors_counted(client, sqlstate_class, "500") == 0
    assert await scalar(pg_url, "SELECT count(*) FROM measurement") == 0


def test_data_errors_are_bugs_and_connection_errors_pass() -> None:
    """Both of asyncpg's DataErrors (the server's class 22, and the InterfaceError raised for an argument of the
    wrong shape) are 500s; an InterfaceError of a lost connection stays a 503."""
    assert classify(asyncpg.DataError("invalid input for query argument $3")) is None
    assert classify(ArgumentError("the argument is not a sequence")) is None
    goodbye = classify(asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"))
    assert goodbye is not None
    assert goodbye.retry_after_s == 1
    slow = classify(TimeoutError())
    assert slow is not None
    assert slow.retry_after_s == 2
    lost = classify(asyncpg.InterfaceError("connection is closed"))
    assert lost is not None
    assert lost.retry_after_s == 1
    for contention in (asyncpg.SerializationError("x"), asyncpg.DeadlockDetectedError("x")):
        busy = classify(contention)  # the writer retried already: pass it on as a 503
        assert busy is not None
        assert busy.retry_after_s == 1
    assert classify(asyncpg.ForeignKeyViolationError("x")) is None
    assert classify(asyncpg.UndefinedColumnError("x")) is None
    full = classify(asyncpg.DiskFullError("could not extend file"))
    assert full is not None
    assert full.retry_after_s == 10
    assert "disk" in full.message


def test_each_class_is_counted_every_time_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    faults = DatabaseFaults(registry, interval_s=0.2)
    with caplog.at_level(logging.WARNING, logger="app.database_errors"):
        for _ in range(5):
            faults.report(asyncpg.DiskFullError("could not extend file"), "a test")
        faults.report(asyncpg.ReadOnlySQLTransactionError("read-only"), "a test")
        time.sleep(0.25)
        faults.report(asyncpg.DiskFullError("could not extend file"), "a test")
    labels = {"sqlstate_class": "53", "status": "503"}
    assert registry.get_sample_value("fleetbed_database_errors_total", labels) == 6
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "SQLSTATE 53100" in lines[0]
    assert "SQLSTATE 25006" in lines[1]
    assert "4 more like it" in lines[2]
