"""`fleetbed report DIR -o report.html`: analyse a run directory of `fleetbed experiment` (numpy) and write the
HTML report and `DIR/summary.json`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.experiment.records import RunDirectoryError
from app.experiment.report_html import write_report
from app.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="turn a run directory into report.html and summary.json",
        description="Per-step throughput, latency, failures and schedule lag; capacity and knee; the bottleneck "
        "with its evidence; inline SVG plots. Self-contained HTML (no network needed to view it).",
    )
    parser.add_argument("directory", type=Path, help="run directory written by `fleetbed experiment`")
    parser.add_argument("-o", "--output", type=Path, help="HTML file (default DIR/report.html)")
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        summary = write_report(args.directory, args.output)
    except RunDirectoryError as exc:
        print(f"fleetbed report: {exc}", file=sys.stderr)
        return 2
    print(summary["bottleneck"]["sentence"])
    print(f"report: {args.output or args.directory / 'report.html'}", file=sys.stderr)
    return 0
