"""The migration runner: numbered SQL files applied in order, recorded in `schema_migrations`.

Each file runs in its own transaction under a session advisory lock, so two migrators started at once apply
every file exactly once. A file whose checksum differs from the one recorded when it was applied stops the
run: applied migrations are history, and a changed file means the code and the database disagree. Before
anything is applied, the server's TimescaleDB state is read and decided on (`app.db.timescaledb`).

A file whose first line is `-- compatibility: additive` declares that code written before it keeps working on the
schema it leaves (a new nullable column, a new table or index). The runner records that; a fleetbed that finds
newer migrations than it knows keeps serving when all of them are additive (a rolling upgrade: the first upgraded
host migrates, the older ones go on), and refuses only when one is not.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from app.db import Connection
from app.db.timescaledb import ENABLE_HINT, Outcome, decide, read_state

log = logging.getLogger(__name__)

# Arbitrary but fixed: the advisory lock key all fleetbed migrators share ("fleetbed" in ASCII).
MIGRATION_LOCK_KEY = 0x666C656574626564
# The migration that picks the layout (TimescaleDB or plain) is the one that creates the extension.
LAYOUT_MARK = "CREATE EXTENSION IF NOT EXISTS timescaledb"
_FILE_NAME = re.compile(r"(\d{3,})_([a-z0-9_]+)\.sql")
ADDITIVE_MARK = "-- compatibility: additive"


# Where an installed wheel keeps the SQL files inside the `app` package (pyproject.toml maps migrations/ there).
PACKAGED_DIR = "_migrations"


class MigrationError(RuntimeError):
    """The database's migration history does not match the files; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str

    @property
    def additive(self) -> bool:
        """Declared safe for code that predates it (see the module docstring)."""
        return self.sql.lstrip().startswith(ADDITIVE_MARK)


def migrations_dir() -> Path:
    """The SQL files: inside the installed package, else the source checkout's `migrations/`.

    The data layer finds its own files (it imports nothing of `app` outside `app/db`); `app.stack.resources`
    finds the other shipped folders the same way and hands this one on.
    """
    package = Path(str(resources.files("app")))
    packaged = package / PACKAGED_DIR
    return packaged if packaged.is_dir() else package.parent / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNN_name.sql")
        data = path.read_bytes()
        found.append(Migration(int(match[1]), match[2], data.decode(), hashlib.sha256(data).hexdigest()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number in {directory}")
    return found


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
# Whether older code keeps working on the migration; rows from before this column read as not additive.
_ADD_ADDITIVE = "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS additive boolean NOT NULL DEFAULT false"


async def applied_migrations(conn: Connection) -> dict[int, str]:
    """version -> checksum of what the database has applied ({} when it never ran a migration)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


async def additive_versions(conn: Connection) -> set[int]:
    """The applied migrations recorded as additive (none before the runner recorded it)."""
    recorded = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
        "WHERE table_name = 'schema_migrations' AND column_name = 'additive' AND table_schema = current_schema())"
    )
    if not recorded:
        return set()
    return {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations WHERE additive")}


def check_history(known: list[Migration], applied: dict[int, str], additive: set[int] | None = None) -> list[Migration]:
    """Return the migrations still to apply; raise if an applied file changed, or if one unknown to this code is
    not recorded as `additive` (newer additive ones are noted and served on)."""
    by_version = {m.version: m for m in known}
    unknown = sorted(set(applied) - set(by_version))
    breaking = [version for version in unknown if version not in (additive or set())]
    if breaking:
        raise MigrationError(
            f"the database has migrations this fleetbed does not know and cannot serve on ({breaking}: not "
            "declared additive); upgrade fleetbed on this host"
        )
    if unknown:
        log.warning("the database has newer additive migrations %s; this fleetbed serves on (upgrade it soon)", unknown)
    for version, checksum in applied.items():
        if version not in by_version:
            continue
        migration = by_version[version]
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {version:03d}_{migration.name}.sql changed after it was applied; "
                "restore the original file and put the change in a new migration"
            )
    return [m for m in known if m.version not in applied]


async def check_timescaledb(conn: Connection, pending: list[Migration]) -> None:
    """Say what the migrations will do about TimescaleDB; raise `MigrationError` in a state they cannot handle."""
    decision = decide(await read_state(conn), any(LAYOUT_MARK in m.sql for m in pending))
    if decision.outcome is Outcome.STOP:
        raise MigrationError(decision.message or "TimescaleDB is in a state the migrations cannot handle")
    if decision.message and (pending or decision.warn):
        (log.warning if decision.warn else log.info)("%s", decision.message)


async def migrate(conn: Connection, known: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration; return what was applied (empty when the database was current)."""
    known = load_migrations() if known is None else known
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        await conn.execute(_ADD_ADDITIVE)
        pending = check_history(known, await applied_migrations(conn), await additive_versions(conn))
        await check_timescaledb(conn, pending)
        for migration in pending:
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum, additive) VALUES ($1, $2, $3, $4)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                        migration.additive,
                    )
            except asyncpg.PostgresError as exc:
                if "must be preloaded" in str(exc):  # the server's own refusal, should the check above miss it
                    raise MigrationError(f"TimescaleDB is installed but not preloaded: {ENABLE_HINT}") from None
                raise
        return pending
    finally:
        if not conn.is_closed():  # a server that refused to load TimescaleDB closes the session
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def pending_migrations(conn: Connection, known: list[Migration]) -> list[Migration]:
    """What `migrate` would apply; raises `MigrationError` when the history does not match the files."""
    return check_history(known, await applied_migrations(conn), await additive_versions(conn))
