"""What the server says about TimescaleDB, and what the migrations do about each state, with one clear line each:

    not installed                         plain PostgreSQL layout (info)
    switched off (fleetbed.timescaledb)   plain PostgreSQL layout (info)
    installed, not preloaded              stop before any change: preload it and restart, or switch it off
    preloaded, not created yet            the layout migration creates it: hypertables (info)
    created, older than the library       carry on, and say how to update it (warning)
    created, current                      nothing to say
    not created, schema already plain     carry on plain, and say so (info)

"Installed" is what `pg_available_extensions` lists; "preloaded" is `shared_preload_libraries` naming the library
(TimescaleDB refuses to load otherwise, and takes the session down with it, which is why this is checked first).
PGlite, the WebAssembly build the tests use, loads extension libraries when they are created and lists none.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import asyncpg

from app.db import Connection

ENABLE_HINT = (
    "add timescaledb to shared_preload_libraries in postgresql.conf and restart PostgreSQL, "
    "or lay out plain PostgreSQL with ALTER ROLE <migrating role> SET fleetbed.timescaledb = 'off'"
)


class Outcome(enum.Enum):
    PLAIN = "plain"  # lay out (or keep) plain PostgreSQL
    TIMESCALEDB = "timescaledb"  # create it / use it
    STOP = "stop"  # refuse to migrate


@dataclass(frozen=True)
class TimescaleDBState:
    available_version: str | None  # the server's library (pg_available_extensions.default_version)
    created_version: str | None  # this database's extension (pg_extension.extversion)
    preloaded: bool | None  # None: the role may not read shared_preload_libraries
    switched_off: bool  # fleetbed.timescaledb = 'off' for this session


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    message: str | None
    warn: bool = False


def names_timescaledb(shared_preload_libraries: str) -> bool:
    """Whether the setting loads TimescaleDB: `timescaledb`, `'$libdir/timescaledb'`, `timescaledb-2.23.0` ..."""
    for entry in shared_preload_libraries.split(","):
        name = entry.strip().strip("'\"").rsplit("/", 1)[-1].removesuffix(".so")
        if name == "timescaledb" or name.startswith("timescaledb-"):
            return True
    return False


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-", 1)[0]))


async def read_state(conn: Connection) -> TimescaleDBState:
    row = await conn.fetchrow(
        """
        SELECT (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb') AS available,
               (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS created,
               coalesce(current_setting('fleetbed.timescaledb', true), 'auto') = 'off' AS switched_off,
               version() LIKE '%Emscripten%' AS loads_without_preload
        """
    )
    assert row is not None
    preloaded: bool | None = True if row["loads_without_preload"] else None
    if preloaded is None:
        try:
            preloaded = names_timescaledb(await conn.fetchval("SHOW shared_preload_libraries"))
        except asyncpg.InsufficientPrivilegeError:
            preloaded = None
    return TimescaleDBState(row["available"], row["created"], preloaded, row["switched_off"])


def decide(state: TimescaleDBState, layout_pending: bool) -> Decision:
    """What the migrations do in this state; `layout_pending` when the migration that picks the layout has yet
    to run (once it ran, the layout is what it chose)."""
    if state.created_version is not None:
        if state.available_version is not None and version_tuple(state.created_version) < version_tuple(
            state.available_version
        ):
            return Decision(
                Outcome.TIMESCALEDB,
                f"TimescaleDB {state.created_version} in this database is older than the server's "
                f"{state.available_version}: run ALTER EXTENSION timescaledb UPDATE as the first command of a "
                "fresh session (psql -X)",
                warn=True,
            )
        return Decision(Outcome.TIMESCALEDB, None)
    if state.available_version is None:
        return Decision(Outcome.PLAIN, "TimescaleDB is not installed on this server: plain PostgreSQL layout")
    if not layout_pending:
        return Decision(Outcome.PLAIN, "this database was laid out for plain PostgreSQL; TimescaleDB stays unused")
    if state.switched_off:
        return Decision(Outcome.PLAIN, "TimescaleDB is switched off (fleetbed.timescaledb = 'off'): plain layout")
    if state.preloaded is False:
        return Decision(
            Outcome.STOP, f"TimescaleDB {state.available_version} is installed but not preloaded: {ENABLE_HINT}"
        )
    return Decision(Outcome.TIMESCALEDB, f"TimescaleDB {state.available_version}: hypertable layout")
