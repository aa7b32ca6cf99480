"""`fleetbed export`: Prometheus range queries to one CSV (tidy by default, `--wide` for one column per series)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from app.cli._arguments import parse_duration_s
from app.settings import Settings
from app.stack.prometheus_export import DEFAULT_QUERIES, ExportError, export_series, write_tidy, write_wide

DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
DEFAULT_STEP = "5s"

_RELATIVE = re.compile(r"^now(?:-(.+))?$")


def parse_time(text: str, now: float | None = None) -> float:
    """RFC 3339 (`2026-11-23T18:00:00Z`), unix seconds, `now` or `now-DURATION`; returns unix seconds."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative is not None:
        base = time.time() if now is None else now
        return base - (parse_duration_s(relative[1]) if relative[1] else 0.0)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (RFC 3339 like 2026-11-23T18:00:00Z, unix seconds, now, now-1h)"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset: add Z or +HH:MM")
    return moment.timestamp()


def parse_query(text: str) -> tuple[str, str]:
    name, separator, expr = text.partition("=")
    if not separator or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()) or not expr.strip():
        raise argparse.ArgumentTypeError(f"--query takes NAME=PROMQL with NAME a plain identifier, got {text!r}")
    return name.strip(), expr.strip()


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "export",
        help="export Prometheus metrics of a run to CSV",
        description="Run Prometheus range queries over [--start, --end] and write the results to one CSV. "
        "Without --query, exports the default set (the dashboards' main panels). Long ranges are split under "
        "Prometheus's 11,000 points per series. Tidy CSV by default: query, timestamp, time, value and one "
        "column per label; --wide writes one row per timestamp and one column per series.",
    )
    parser.add_argument(
        "--prometheus", default=DEFAULT_PROMETHEUS, help=f"Prometheus URL (default {DEFAULT_PROMETHEUS})"
    )
    parser.add_argument("--start", required=True, type=parse_time, help="RFC 3339, unix seconds, or now-DURATION")
    parser.add_argument("--end", default="now", type=parse_time, help="same forms as --start (default now)")
    parser.add_argument(
        "--step", default=DEFAULT_STEP, type=parse_duration_s, help=f"resolution (default {DEFAULT_STEP})"
    )
    parser.add_argument(
        "--query", action="append", type=parse_query, metavar="NAME=PROMQL", help="a query to export (repeatable)"
    )
    parser.add_argument("--wide", action="store_true", help="one row per timestamp, one column per series")
    parser.add_argument("-o", "--output", required=True, help="CSV file to write ('-' for standard output)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


class ProgressBar:
    """A one-line bar on a terminal; on anything else, nothing until the summary."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // total
        self.stream.write(f"\rexporting [{'#' * filled}{'.' * (width - filled)}] {done}/{total} requests")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def run(settings: Settings, args: argparse.Namespace) -> int:
    queries = dict(args.query) if args.query else dict(DEFAULT_QUERIES)
    start_ms, end_ms, step_ms = round(args.start * 1000), round(args.end * 1000), max(1, round(args.step * 1000))
    try:
        series = export_series(
            args.prometheus, queries, start_ms, end_ms, step_ms, ProgressBar(sys.stderr, not args.quiet)
        )
    except ExportError as exc:
        print(f"fleetbed export: {exc}", file=sys.stderr)
        return 2
    write = write_wide if args.wide else write_tidy
    if args.output == "-":
        rows = write(series, sys.stdout)
    else:
        with Path(args.output).open("w", newline="") as out:
            rows = write(series, out)
    empty = [name for name in queries if not any(one.query == name for one in series)]
    print(
        f"fleetbed export: {len(series)} series, {rows} rows from {len(queries)} queries -> {args.output}",
        file=sys.stderr,
    )
    if empty:
        print(f"fleetbed export: no data in range for: {', '.join(empty)}", file=sys.stderr)
    return 0
