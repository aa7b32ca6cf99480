"""`fleetbed report DIR -o report.html`: analyse a run directory of `fleetbed experiment` (numpy) and write the
HTML report and `DIR/summary.json`; `fleetbed report --compare RUN_A RUN_B`: the two runs side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.experiment.records import RunDirectoryError
from app.experiment.report import write_report
from app.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="turn a run directory into report.html and summary.json",
        description="Per-step throughput, latency, failures and schedule lag; capacity and knee; the bottleneck "
        "with its evidence; inline SVG plots. Self-contained HTML (no network needed to view it).",
    )
    parser.add_argument("directory", type=Path, nargs="?", help="run directory written by `fleetbed experiment`")
    parser.add_argument(
        "-o", "--output", type=Path, help="HTML file (default DIR/report.html; --compare: RUN_B/compare.html)"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("RUN_A", "RUN_B"),
        help="two run directories side by side: capacity, knee, bottleneck and every step's figures, with the change",
    )
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.compare:
        return compare(args.compare[0], args.compare[1], args.output)
    if args.directory is None:
        print("fleetbed report: give a run directory, or --compare RUN_A RUN_B", file=sys.stderr)
        return 2
    try:
        summary = write_report(args.directory, args.output)
    except RunDirectoryError as exc:
        print(f"fleetbed report: {exc}", file=sys.stderr)
        return 2
    print(summary["bottleneck"]["sentence"])
    print(f"report: {args.output or args.directory / 'report.html'}", file=sys.stderr)
    return 0


def compare(run_a: Path, run_b: Path, output: Path | None) -> int:
    from app.experiment.compare import compare_runs
    from app.experiment.compare_html import render_comparison

    try:
        comparison, charts = compare_runs(run_a, run_b)
    except RunDirectoryError as exc:
        print(f"fleetbed report: {exc}", file=sys.stderr)
        return 2
    path = output or run_b / "compare.html"
    path.write_text(render_comparison(comparison, charts))
    a, b = comparison["a"], comparison["b"]
    for label, key in (("capacity", "capacity_devices"), ("knee", "knee_devices")):
        shift = comparison[label.split()[0]]
        relative = "" if shift["relative"] is None else f" ({shift['relative']:+.0%}, {shift['verdict']})"
        print(f"{label}: {_devices(a[key])} -> {_devices(b[key])}{relative}")
    print(f"bottleneck: {a['bottleneck']} -> {b['bottleneck']}")
    print(f"comparison: {path}", file=sys.stderr)
    return 0


def _devices(value: int | None) -> str:
    return "none" if value is None else f"{value:,}"
