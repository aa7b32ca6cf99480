"""`fleetbed backfill`: realistic history at realistic table sizes."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from tqdm import tqdm

from app.backfill import BackfillPlan, backfill
from app.cli._arguments import parse_duration_s, positive_int
from app.settings import Settings, SettingsError
from app.stack.database import database_url, report_migrations


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "backfill",
        help="fill the database with realistic device history",
        description="Register DEVICES new devices and write READINGS readings for each, INTERVAL apart and ending "
        "now (or --end), with the latest state, hourly rollup and fleet totals kept exact. Uses binary COPY where "
        "the server supports it. Example: fleetbed backfill --devices 10000 --readings 500  (5 million readings)",
    )
    parser.add_argument("--devices", type=positive_int, required=True, help="new devices to create")
    parser.add_argument("--readings", type=positive_int, required=True, help="readings per device")
    parser.add_argument("--interval", type=parse_duration_s, default=30.0, help="default 30s")
    parser.add_argument("--end", type=datetime.fromisoformat, help="time of the newest readings (default: now)")
    parser.add_argument("--seed", type=int, help="random seed, for a reproducible history")
    parser.set_defaults(run=run)


async def _run(url: str, plan: BackfillPlan) -> tuple[int, float]:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    try:
        with tqdm(total=plan.total_readings, unit=" readings", unit_scale=True, desc="backfill") as bar:
            written = await backfill(conn, plan, bar.update)
    finally:
        await conn.close()
    return written, time.perf_counter() - started


def run(settings: Settings, args: argparse.Namespace) -> int:
    end = args.end or datetime.now(UTC)
    if end.tzinfo is None:
        raise SettingsError("--end needs a UTC offset, e.g. 2026-11-20T12:00:00+00:00")
    plan = BackfillPlan(args.devices, args.readings, timedelta(seconds=args.interval), end, args.seed)
    with database_url(settings) as url:
        report_migrations(url)
        written, seconds = asyncio.run(_run(url, plan))
    print(f"backfilled {written:,} readings for {args.devices:,} devices in {seconds:.1f} s "
          f"({written / max(seconds, 1e-9):,.0f} readings/s)")  # fmt: skip
    return 0
