"""The migration runner: idempotent, safe when run concurrently, strict about history."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from app.db.migrations import MigrationError, load_migrations, migrate, migrations_dir
from app.server import create_app
from tests.conftest import AiohttpClient, make_settings
from tests.support.db import fetch, scalar
from tests.support.devices import BASE_TIME, iso


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


async def test_migrate_applies_everything_once_and_records_checksums(empty_pg_url: str) -> None:
    conn = await connect(empty_pg_url)
    try:
        applied = await migrate(conn)
        assert [m.version for m in applied] == [m.version for m in load_migrations()]
        assert await migrate(conn) == [], "a second run has nothing to do"
    finally:
        await conn.close()
    rows = await fetch(empty_pg_url, "SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["checksum"]) for r in rows] == [(m.version, m.checksum) for m in load_migrations()]
    tables = await fetch(empty_pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {"device", "measurement", "command", "device_state", "run", "run_snapshot", "water_temp_hourly"} <= {
        r["tablename"] for r in tables
    }


async def test_concurrent_migrators_apply_each_file_exactly_once(empty_pg_url: str) -> None:
    connections = [await connect(empty_pg_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(conn) for conn in connections))
    finally:
        for conn in connections:
            await conn.close()
    applied_counts = sorted(len(result) for result in results)
    assert applied_counts == [0, 0, 0, len(load_migrations())]
    assert await scalar(empty_pg_url, "SELECT count(*) FROM schema_migrations") == len(load_migrations())


def copy_migrations(target: Path) -> Path:
    shutil.copytree(migrations_dir(), target)
    return target


async def test_a_changed_applied_file_stops_the_run(empty_pg_url: str, tmp_path: Path) -> None:
    directory = copy_migrations(tmp_path / "migrations")
    conn = await connect(empty_pg_url)
    try:
        await migrate(conn, load_migrations(directory))
        first = sorted(directory.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited after release\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, load_migrations(directory))
    finally:
        await conn.close()


async def test_a_database_ahead_of_the_code_is_refused(empty_pg_url: str, tmp_path: Path) -> None:
    directory = copy_migrations(tmp_path / "migrations")
    (directory / "999_future.sql").write_text("CREATE TABLE future_thing (id int);\n")
    conn = await connect(empty_pg_url)
    try:
        await migrate(conn, load_migrations(directory))
        with pytest.raises(MigrationError, match="does not know"):
            await migrate(conn, load_migrations())
    finally:
        await conn.close()


async def test_an_older_host_serves_on_a_newer_additive_schema(
    empty_pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    directory = copy_migrations(tmp_path / "migrations")
    (directory / "998_future_column.sql").write_text(
        "-- compatibility: additive\nALTER TABLE device ADD COLUMN firmware_channel text;\n"
    )
    conn = await connect(empty_pg_url)
    try:
        await migrate(conn, load_migrations(directory))  # the upgraded host migrates first
        assert await migrate(conn, load_migrations()) == [], "the older host: nothing to do, no refusal"
        (directory / "999_future_break.sql").write_text("ALTER TABLE device RENAME COLUMN metadata TO attributes;\n")
        await migrate(conn, load_migrations(directory))
        with pytest.raises(MigrationError, match=r"\[999\]: not declared additive"):
            await migrate(conn, load_migrations())
    finally:
        await conn.close()
    rows = await fetch(empty_pg_url, "SELECT version, additive FROM schema_migrations WHERE version >= 998")
    assert {(r["version"], r["additive"]) for r in rows} == {(998, True), (999, False)}


async def test_readyz_stays_ready_on_a_newer_additive_schema(
    empty_pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    directory = copy_migrations(tmp_path / "migrations")
    (directory / "998_future_column.sql").write_text(
        "-- compatibility: additive\nCREATE TABLE future_thing (id int);\n"
    )
    conn = await connect(empty_pg_url)
    try:
        await migrate(conn, load_migrations(directory))
    finally:
        await conn.close()
    client: TestClient = await aiohttp_client(create_app(make_settings(empty_pg_url, tmp_path)))
    assert (await client.get("/readyz")).status == 200


async def test_a_failing_migration_leaves_no_trace(empty_pg_url: str, tmp_path: Path) -> None:
    directory = copy_migrations(tmp_path / "migrations")
    last = load_migrations()[-1].version
    (directory / f"{last + 1:03d}_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
    )
    conn = await connect(empty_pg_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, load_migrations(directory))
    finally:
        await conn.close()
    assert await scalar(empty_pg_url, "SELECT to_regclass('half_done') IS NULL")
    assert await scalar(empty_pg_url, "SELECT max(version) FROM schema_migrations") == last


def test_badly_named_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "add_things.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNN_name\.sql"):
        load_migrations(tmp_path)


async def test_readyz_reports_pending_migrations_until_migrated(
    empty_pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    conn = await connect(empty_pg_url)
    try:
        await migrate(conn, load_migrations()[:1])
    finally:
        await conn.close()
    client: TestClient = await aiohttp_client(create_app(make_settings(empty_pg_url, tmp_path)))
    response = await client.get("/readyz")
    assert response.status == 503
    assert "002_timescaledb" in (await response.json())["reason"]
    conn = await connect(empty_pg_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/healthz")).status == 200


async def test_a_service_started_before_migrations_answers_503_then_works(
    empty_pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(empty_pg_url, tmp_path)))
    early = await client.post("/login")
    assert early.status == 503
    assert "fleetbed migrate" in (await early.json())["message"]
    assert early.headers["Retry-After"]
    conn = await connect(empty_pg_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    login = await (await client.post("/login")).json()
    headers = {"Authorization": f"Bearer {login['token']}"}
    reading = {
        "time": iso(BASE_TIME), "charge_now": 1, "charge_full": 2, "charge_rate": 0.0,
        "ambient_temp": 20.0, "water_temp": 50.0, "water_level": 5,
    }  # fmt: skip
    assert (await client.post("/measurement", json=reading, headers=headers)).status == 201
    stats = await (await client.get("/stats", headers=headers)).json()
    assert stats["mean_water_temp_by_hour"][0]["readings"] == 1, "the hourly rollup is kept once migrated"
