"""`fleetbed serve`: the device-data service."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from typing import Any

from app.settings import Settings
from app.stack.database import database_url, report_migrations


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the device-data service",
        description="Run the device-data service. Applies pending migrations first unless --no-migrate.",
    )
    parser.add_argument("--host", help="bind address (default FLEETBED_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default FLEETBED_PORT or 8080)")
    parser.add_argument("--workers", type=int, help="worker processes sharing the port (default FLEETBED_WORKERS or 1)")
    parser.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    parser.set_defaults(run=run)


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
    if settings.enrolment == "closed":
        print(
            f"  enrolment is closed: listening on {settings.host} without FLEETBED_ENROLL_KEY, new devices cannot "
            "register (set FLEETBED_ENROLL_KEY, or FLEETBED_ENROLL_OPEN=1)\n",
            flush=True,
        )


def run(settings: Settings, args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v}
    settings = replace(settings, **overrides)
    from app.serving import serve

    with database_url(settings) as url:
        if not args.no_migrate:
            report_migrations(url)
        print_usage_hints(settings)
        serve(replace(settings, database_url=url))
    return 0
