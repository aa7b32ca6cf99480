"""`fleetbed migrate`: apply pending migrations."""

from __future__ import annotations

import argparse
from typing import Any

from app.settings import Settings
from app.stack.database import database_url, report_migrations


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply the SQL files in migrations/ that the database has not seen. Idempotent; safe to run "
        "from several processes at once (they take turns on an advisory lock). Refuses to run when an applied "
        "file has changed.",
    )
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    with database_url(settings) as url:
        report_migrations(url)
    return 0
