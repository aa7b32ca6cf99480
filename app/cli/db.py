"""`fleetbed db`: the embedded PostgreSQL in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from app.settings import Settings
from app.stack.database import database_url, report_migrations


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "db",
        help="run the embedded PostgreSQL in the foreground",
        description="Start the embedded PostgreSQL (creating it on first use), apply migrations, print its URL "
        "and keep it running until Ctrl-C.",
    )
    parser.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if settings.database_url is not None:
        print("FLEETBED_DATABASE_URL is set: fleetbed uses that server, not the embedded one.", file=sys.stderr)
        return 2
    with database_url(settings) as url:
        if not args.no_migrate:
            report_migrations(url)
        print(f"embedded PostgreSQL running:\n  FLEETBED_DATABASE_URL={url}\nCtrl-C stops it.", flush=True)
        try:
            while True:
                signal.pause()  # until SIGINT, SIGTERM or SIGHUP (app/stack/lifetime.py)
        except KeyboardInterrupt:
            print("stopping the embedded PostgreSQL", flush=True)
    return 0
