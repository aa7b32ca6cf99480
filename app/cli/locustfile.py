"""`fleetbed locustfile`: where the installed fleet's locustfiles are, for running Locust by hand."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.settings import Settings
from app.stack.resources import FLEET_LOCUSTFILE, locustfiles_dir


def scenarios() -> list[str]:
    """The locustfiles a user can run (Locust skips the `_`-prefixed helper modules beside them)."""
    return sorted(path.name for path in locustfiles_dir().glob("*.py") if not path.name.startswith("_"))


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "locustfile",
        help="print the path of the installed fleet's locustfile",
        description="Print the absolute path of the fleet's locustfile as installed, for Locust run by hand: "
        "locust -f $(fleetbed locustfile) -H http://127.0.0.1:8080. Works from any directory.",
    )
    parser.add_argument(
        "scenario",
        nargs="?",
        default=FLEET_LOCUSTFILE,
        help=f"which locustfile (default {FLEET_LOCUSTFILE}; kettle_db.py writes to the database directly)",
    )
    parser.add_argument("--dir", action="store_true", help="print the folder that holds the locustfiles instead")
    parser.set_defaults(run=run, needs_settings=False)


def run(settings: Settings | None, args: argparse.Namespace) -> int:
    if args.dir:
        print(locustfiles_dir())
        return 0
    known = scenarios()
    if args.scenario not in known:
        print(f"fleetbed locustfile: no scenario {args.scenario!r}; choose one of {', '.join(known)}", file=sys.stderr)
        return 2
    print(locustfiles_dir() / args.scenario)
    return 0
