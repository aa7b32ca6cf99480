"""Migrations in every TimescaleDB state, each with a clear outcome: the decision for each state, what real servers
report (plain PostgreSQL; PostgreSQL 18 shown an installed but unloaded TimescaleDB through extension_control_path;
the PGlite TimescaleDB), and migrate itself stopping with one line instead of a traceback."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from app.db.migrations import MigrationError, applied_migrations, check_timescaledb, load_migrations, migrate
from app.db.timescaledb import Outcome, TimescaleDBState, decide, names_timescaledb, read_state
from tests.support.processes import fleetbed_command
from tests.support.requirements import missing

NEWER, OLDER = "2.23.0", "2.20.0"


@pytest.mark.parametrize(
    ("state", "layout_pending", "outcome", "words"),
    [
        (TimescaleDBState(None, None, False, False), True, Outcome.PLAIN, "not installed"),
        (TimescaleDBState(NEWER, None, False, False), True, Outcome.STOP, "not preloaded"),
        (TimescaleDBState(NEWER, None, False, True), True, Outcome.PLAIN, "switched off"),
        (TimescaleDBState(NEWER, None, True, False), True, Outcome.TIMESCALEDB, "hypertable layout"),
        (TimescaleDBState(NEWER, None, None, False), True, Outcome.TIMESCALEDB, "hypertable layout"),
        (TimescaleDBState(NEWER, None, True, False), False, Outcome.PLAIN, "laid out for plain"),
        (TimescaleDBState(NEWER, OLDER, True, False), False, Outcome.TIMESCALEDB, "ALTER EXTENSION timescaledb UPDATE"),
        (TimescaleDBState(NEWER, NEWER, True, False), False, Outcome.TIMESCALEDB, None),
        (TimescaleDBState("2.23.0", "2.23.0-dev", True, False), False, Outcome.TIMESCALEDB, None),
    ],
)
def test_each_state_has_one_outcome(
    state: TimescaleDBState, layout_pending: bool, outcome: Outcome, words: str | None
) -> None:
    decision = decide(state, layout_pending)
    assert decision.outcome is outcome
    if words is None:
        assert decision.message is None
    else:
        assert decision.message is not None
        assert words in decision.message
        assert "\n" not in decision.message


def test_preload_setting_is_read_the_way_postgresql_writes_it() -> None:
    assert names_timescaledb("timescaledb")
    assert names_timescaledb("pg_stat_statements, '$libdir/timescaledb'")
    assert names_timescaledb('"timescaledb-2.23.0"')
    assert not names_timescaledb("")
    assert not names_timescaledb("pg_stat_statements,timescaledb_toolkit")


@pytest.fixture
def fake_timescaledb() -> Iterator[Path]:
    """Control files that make PostgreSQL list a TimescaleDB (2.23.0, with a 2.20.0 script that loads nothing)."""
    share = Path(tempfile.mkdtemp(prefix="fleetbed-fake-extension-"))
    directory = share / "extension"  # PostgreSQL looks for control files in <path entry>/extension
    directory.mkdir()
    (directory / "timescaledb.control").write_text(
        f"comment = 'stand-in'\ndefault_version = '{NEWER}'\nrelocatable = false\n"
    )
    (directory / f"timescaledb--{OLDER}.sql").write_text("-- nothing: the library is never loaded\n")
    for path in (share, directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield share
    shutil.rmtree(share, ignore_errors=True)


@pytest.fixture
async def conn(empty_pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(empty_pg_url)
    yield connection
    await connection.close()


async def show_installed(conn: asyncpg.Connection, directory: Path) -> None:
    """List the stand-in TimescaleDB in this session, as a package install would for the server (PostgreSQL 18)."""
    if conn.get_server_version().major < 18:
        pytest.skip("extension_control_path needs PostgreSQL 18")
    await conn.execute(f"SET extension_control_path = '{directory}:$system'")


async def test_plain_postgresql_gets_the_plain_layout(conn: asyncpg.Connection) -> None:
    state = await read_state(conn)
    assert (state.available_version, state.created_version, state.preloaded) == (None, None, False)
    await migrate(conn)
    assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0


async def test_installed_but_not_preloaded_stops_with_one_line_before_any_change(
    conn: asyncpg.Connection, fake_timescaledb: Path
) -> None:
    await show_installed(conn, fake_timescaledb)
    state = await read_state(conn)
    assert (state.available_version, state.created_version, state.preloaded) == (NEWER, None, False)
    with pytest.raises(MigrationError) as refused:
        await migrate(conn)
    message = str(refused.value)
    assert "installed but not preloaded" in message
    assert "shared_preload_libraries" in message
    assert "fleetbed.timescaledb = 'off'" in message
    assert "\n" not in message
    assert await applied_migrations(conn) == {}, "nothing was applied"
    # The way out without a restart: switch TimescaleDB off, get the plain layout.
    await conn.execute("SET fleetbed.timescaledb = 'off'")
    applied = await migrate(conn)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert await conn.fetchval("SELECT to_regclass('water_temp_hourly') IS NOT NULL")


async def test_created_at_an_older_version_carries_on_and_says_how_to_update(
    conn: asyncpg.Connection, fake_timescaledb: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await show_installed(conn, fake_timescaledb)
    await conn.execute(f"CREATE EXTENSION timescaledb VERSION '{OLDER}'")
    state = await read_state(conn)
    assert (state.available_version, state.created_version) == (NEWER, OLDER)
    with caplog.at_level(logging.WARNING, logger="app.db.migrations"):
        await check_timescaledb(conn, [])
    assert "ALTER EXTENSION timescaledb UPDATE" in caplog.text


@pytest.mark.timescaledb
async def test_timescaledb_created_by_the_migrations_is_current(ts_url: str) -> None:
    connection = await asyncpg.connect(ts_url, ssl=False)
    try:
        state = await read_state(connection)
    finally:
        await connection.close()
    assert state.preloaded is True, "PGlite loads TimescaleDB without a preload setting"
    assert state.created_version == state.available_version
    assert decide(state, layout_pending=False).message is None


@pytest.mark.slow
@pytest.mark.timescaledb
def test_timescaledb_loaded_but_not_created_gets_the_hypertable_layout() -> None:
    import asyncio

    from tests.support import timescaledb as ts

    reason = ts.timescaledb_available()
    if reason is not None:
        missing(reason)
    ts.ensure_node_modules()

    async def state_then_migrate(url: str) -> tuple[TimescaleDBState, str | None]:
        connection = await asyncpg.connect(url, ssl=False)
        try:
            before = await read_state(connection)
            await migrate(connection)
            created = await connection.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        finally:
            await ts.close_quietly(connection)
        return before, created

    with ts.running_timescaledb() as url:
        before, created = asyncio.run(state_then_migrate(url))
    assert before.created_version is None
    assert decide(before, layout_pending=True).outcome is Outcome.TIMESCALEDB
    assert created == before.available_version


def test_fleetbed_migrate_says_it_in_one_line_and_exits_2(empty_pg_url: str, fake_timescaledb: Path) -> None:
    """What an operator sees on a server where TimescaleDB is installed but not preloaded: one line, no traceback."""
    # asyncpg passes unknown DSN parameters to the server as settings: this session lists the stand-in.
    url = f"{empty_pg_url}?extension_control_path={urllib.parse.quote(f'{fake_timescaledb}:$system', safe='')}"
    result = subprocess.run(
        [*fleetbed_command(), "migrate"],
        env={**os.environ, "FLEETBED_DATABASE_URL": url, "FLEETBED_DATA_DIR": tempfile.mkdtemp()},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if "extension_control_path" in result.stderr:
        pytest.skip("extension_control_path needs PostgreSQL 18")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fleetbed:")]
    assert len(errors) == 1, result.stderr
    assert "installed but not preloaded" in errors[0]
    assert "shared_preload_libraries" in errors[0]
