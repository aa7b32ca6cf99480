"""The embedded PostgreSQL: created once, durable, password-protected, reused while running, stopped cleanly."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import asyncpg
import pytest

from app.stack.embedded_db import SHARED_ROOT, EmbeddedPostgres, sweep_orphans


@pytest.fixture
def data_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="fleetbed-embedded-"))
    directory.chmod(0o755)
    return directory


async def test_start_reuse_and_stop(data_dir: Path) -> None:
    first = EmbeddedPostgres(data_dir)
    running = first.start()
    try:
        assert running.started_here
        conn = await asyncpg.connect(running.url)
        try:
            assert await conn.fetchval("SHOW fsync") == "on"
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
            assert await conn.fetchval("SELECT current_database()") == "fleetbed"
        finally:
            await conn.close()

        second = EmbeddedPostgres(data_dir)
        reused = second.start()
        assert not reused.started_here, "a second user reuses the running server"
        assert reused.url == running.url
        second.stop()
        conn = await asyncpg.connect(running.url)
        await conn.close()  # still running: only the starter stops it
    finally:
        first.stop()
    with pytest.raises(OSError, match=r"Connect call failed|refused"):
        await asyncpg.connect(running.url, timeout=2)


async def test_password_is_required_and_stored_privately(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    running = server.start()
    try:
        without_password = running.url.replace(f":{server.password()}@", "@")
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(without_password, timeout=5)
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(running.url.replace(server.password(), "wrong-password"), timeout=5)
    finally:
        server.stop()
    assert (data_dir / "secrets" / "database-password").stat().st_mode & 0o777 == 0o600


async def test_data_survives_a_restart_and_a_crash(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    url = server.start().url
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
    await conn.close()
    server.stop_immediately()  # no shutdown checkpoint: recovery must replay the WAL
    url = server.start().url
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT n FROM kept") == 1
    finally:
        await conn.close()
        server.stop()


def test_no_secret_is_readable_by_others_even_for_a_moment(data_dir: Path) -> None:
    """Files are created with their final mode: no chmod during the cluster's creation ever opens one to the
    group or others (the password file initdb reads used to be made world-readable in a temporary directory)."""
    opened_up: list[tuple[str, int]] = []
    watching = [True]

    def audit(event: str, args: tuple[object, ...]) -> None:
        if watching[0] and event == "os.chmod" and isinstance(args[1], int) and args[1] & 0o077:
            opened_up.append((str(args[0]), args[1]))

    sys.addaudithook(audit)  # hooks cannot be removed: this one stops looking when the test ends
    try:
        EmbeddedPostgres(data_dir / "data").initialise()
    finally:
        watching[0] = False
    assert opened_up == []
    secret = data_dir / "data" / "secrets" / "database-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.parent.stat().st_mode & 0o077 == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="clusters are relocated only when fleetbed runs as root")
def test_a_relocated_cluster_goes_with_its_data_dir(tmp_path: Path) -> None:
    """As root with a data dir other users cannot reach, the cluster lives under /var/lib/fleetbed. A data dir
    made anew at the same path gets a new cluster (the old one's password is gone), and a cluster whose data dir
    was deleted is swept away when the next one is placed."""
    tmp_path.chmod(0o700)  # as pytest's own: the service user cannot enter
    data_dir = tmp_path / "data"
    server = EmbeddedPostgres(data_dir)
    assert server.pgdata.parent == SHARED_ROOT
    url = server.start().url
    server.stop()
    shutil.rmtree(data_dir)
    again = EmbeddedPostgres(data_dir)  # the same path, made anew: the old cluster must not be reused
    assert not again.initialised()
    url_again = again.start().url
    try:
        assert url_again != url
        assert asyncio.run(_answers(url_again))
    finally:
        again.stop()
    shutil.rmtree(tmp_path)
    other = Path(tempfile.mkdtemp()) / "data"  # its parent is 0700 as mkdtemp makes it
    try:
        EmbeddedPostgres(other)
        assert not again.pgdata.exists(), "the orphaned cluster is swept"
        assert not again.pgdata.with_name(again.pgdata.name + ".owner").exists()
    finally:
        shutil.rmtree(other.parent)
        sweep_orphans()


async def _answers(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval("SELECT true"))
    finally:
        await conn.close()
