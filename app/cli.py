"""The `fleetbed` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import asyncpg

from app import __version__
from app.db.migrations import MigrationError, migrate
from app.embedded_db import EmbeddedDatabaseError, embedded_database
from app.settings import Settings, SettingsError

log = logging.getLogger("fleetbed")

DESCRIPTION = """\
fleetbed: a test bed for IoT fleets. It runs a device-data service on PostgreSQL (or TimescaleDB),
drives it with a simulated fleet and tells you what gives out first.

With FLEETBED_DATABASE_URL unset, every command uses the embedded PostgreSQL server kept in
FLEETBED_DATA_DIR (default ./.fleetbed): it is created on first use and stopped when the command exits.
"""

EPILOG = """\
environment:
  FLEETBED_DATABASE_URL    PostgreSQL/TimescaleDB DSN (unset: embedded PostgreSQL)
  FLEETBED_DATA_DIR        embedded database, generated secrets, run outputs (default ./.fleetbed)
  FLEETBED_HOST, FLEETBED_PORT, FLEETBED_WORKERS   where and how the service listens
  FLEETBED_SECRET          key that signs device tokens (default: generated into the data dir)
  FLEETBED_OPERATOR_TOKEN  bearer token for operator endpoints (default: generated likewise)
  FLEETBED_ENROLL_KEY      when set, POST /login requires it

examples:
  fleetbed serve                  serve the API on http://127.0.0.1:8080 with the embedded database
  fleetbed serve --workers 2      two worker processes on one port
  fleetbed db                     run the embedded database in the foreground and print its URL
  FLEETBED_DATABASE_URL=postgresql://user:pass@db:5432/fleet fleetbed migrate
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetbed",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fleetbed {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the device-data service",
        description="Run the device-data service. Applies pending migrations first unless --no-migrate.",
    )
    serve.add_argument("--host", help="bind address (default FLEETBED_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default FLEETBED_PORT or 8080)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (default FLEETBED_WORKERS or 1)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")

    commands.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply the SQL files in migrations/ that the database has not seen. Idempotent; safe to run "
        "from several processes at once (they take turns on an advisory lock). Refuses to run when an applied "
        "file has changed.",
    )
    database = commands.add_parser(
        "db",
        help="run the embedded PostgreSQL in the foreground",
        description="Start the embedded PostgreSQL (creating it on first use), apply migrations, print its URL "
        "and keep it running until Ctrl-C.",
    )
    database.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    return parser


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


def print_usage_hints(settings: Settings) -> None:
    base = f"http://{settings.host}:{settings.port}"
    token_source = (
        "$FLEETBED_OPERATOR_TOKEN"
        if "FLEETBED_OPERATOR_TOKEN" in os.environ
        else settings.data_dir / "secrets/operator-token"
    )
    print(
        f"""
fleetbed is serving on {base}  (Ctrl-C stops it and the embedded database)

  try it:
    TOKEN=$(curl -s -X POST {base}/login | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    curl -H "Authorization: Bearer $TOKEN" {base}/command
    curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' {base}/measurement \\
      -d '{{"time": "'$(date -u +%FT%TZ)'", "charge_now": 80, "charge_full": 100, "charge_rate": -1.5,
           "ambient_temp": 21.0, "water_temp": 64.5, "water_level": 70}}'
    curl -H "Authorization: Bearer $TOKEN" {base}/stats

  API description: {base}/openapi.json    metrics: {base}/metrics    readiness: {base}/readyz
  operator token:  {token_source}
""",
        flush=True,
    )


def command_serve(settings: Settings, args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v}
    settings = replace(settings, **overrides)
    from app.serving import serve

    with database_url(settings) as url:
        if not args.no_migrate:
            report_migrations(url)
        print_usage_hints(settings)
        serve(replace(settings, database_url=url))
    return 0


def command_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database_url(settings) as url:
        report_migrations(url)
    return 0


def command_db(settings: Settings, args: argparse.Namespace) -> int:
    if settings.database_url is not None:
        print("FLEETBED_DATABASE_URL is set: fleetbed uses that server, not the embedded one.", file=sys.stderr)
        return 2
    with database_url(settings) as url:
        if not args.no_migrate:
            report_migrations(url)
        print(f"embedded PostgreSQL running:\n  FLEETBED_DATABASE_URL={url}\nCtrl-C stops it.", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        print("stopping the embedded PostgreSQL", flush=True)
    return 0


COMMANDS = {"serve": command_serve, "migrate": command_migrate, "db": command_db}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        return COMMANDS[args.command](settings, args)
    except (SettingsError, MigrationError, EmbeddedDatabaseError) as exc:
        print(f"fleetbed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
