"""What several commands share: the database to use, and applying migrations to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from app.db.migrations import migrate
from app.settings import Settings
from app.stack.embedded_db import embedded_database

log = logging.getLogger("fleetbed")


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one for the duration of the block."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    with embedded_database(settings.data_dir) as server:
        yield server.url


async def apply_migrations(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [f"{m.version:03d}_{m.name}" for m in await migrate(conn)]
    finally:
        await conn.close()


def report_migrations(url: str) -> None:
    applied = asyncio.run(apply_migrations(url))
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    else:
        log.info("database schema is current")
