"""The `fleetbed` command line: one module per command, each with `register(commands)` and `run(settings, args)`.

To add a command, write `app/cli/<name>.py` with those two functions and list the module in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from app import __version__
from app.cli import backfill, db, experiment, export, locustfile, migrate, report, serve, up
from app.db.migrations import MigrationError
from app.settings import Settings, SettingsError
from app.stack.embedded_db import EmbeddedDatabaseError
from app.stack.lifetime import stop_on_signals

COMMANDS: tuple[ModuleType, ...] = (serve, migrate, db, backfill, export, experiment, report, up, locustfile)

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
  locust -f $(fleetbed locustfile) -H http://127.0.0.1:8080   the installed fleet, run by hand
  FLEETBED_DATABASE_URL=postgresql://user:pass@db:5432/fleet fleetbed migrate
"""

# Errors a user can fix from the message alone: printed without a traceback, exit code 2.
USER_ERRORS = (SettingsError, MigrationError, EmbeddedDatabaseError)


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
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        # Commands that only read what is installed (`locustfile`) leave the data dir and its secrets alone.
        settings = Settings.from_env() if getattr(args, "needs_settings", True) else None
        code: int = args.run(settings, args)
        return code
    except USER_ERRORS as exc:
        print(f"fleetbed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The console script: as a process of its own, SIGTERM and SIGHUP stop every command the way Ctrl-C does
    (not in `main`, which tests call in their own process)."""
    stop_on_signals()
    sys.exit(main())
