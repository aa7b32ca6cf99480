"""A real PostgreSQL for the test session: the embedded server, one fresh database per test.

Besides the embedded server (PostgreSQL 18, from the wheel), Debian's PostgreSQL 15 (`apt-get install
postgresql`) is started the same way for the tests that must hold on the older servers TimescaleDB runs on; the
benchmarks start it from here too.

The schema is migrated once into a template database; each test gets `CREATE DATABASE ... TEMPLATE`, which
copies files instead of replaying migrations.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from app.db.migrations import migrate
from app.stack.embedded_db import EmbeddedPostgres

TEMPLATE = "fleetbed_template"
POSTGRES_15_BIN = Path("/usr/lib/postgresql/15/bin")
_names = itertools.count()


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def postgres_15_missing() -> str | None:
    """Why Debian's PostgreSQL 15 cannot be started here, or None when it can."""
    if not (POSTGRES_15_BIN / "postgres").exists():
        return f"PostgreSQL 15 is not installed ({POSTGRES_15_BIN}/postgres missing): apt-get install postgresql"
    return None


@contextmanager
def running_postgres(binaries: Path | None = None) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A server in a temporary data dir the server's own user can reach (also when run as root).

    The embedded PostgreSQL 18 by default; `binaries`: another installation's bin directory (POSTGRES_15_BIN).
    """
    data_dir = Path(tempfile.mkdtemp(prefix="fleetbed-test-pg-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir, binaries)
    running = server.start()
    try:
        yield server, running.url
    finally:
        server.stop()


async def create_template(url: str) -> None:
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(with_database(url, TEMPLATE))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def fresh_database(url: str, migrated: bool = True) -> str:
    name = f"test_{os.getpid()}_{next(_names)}"
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        template = TEMPLATE if migrated else "template0"
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await admin.close()
    return with_database(url, name)


async def drop_database(url: str, name_url: str) -> None:
    name = name_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()
