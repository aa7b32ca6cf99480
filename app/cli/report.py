"""`fleetbed report`: the verdict of a run, as `report.html` and `summary.json`.

- `fleetbed report DIR`: a run directory of `fleetbed experiment`;
- `fleetbed report --prometheus URL (--run RUN_ID|latest | --from T --to T) [--service URL] [--out DIR]`: any run
  that Prometheus kept (started from the Locust web UI of any deployment, say), rebuilt into a run directory from
  Prometheus's range queries and the service's run record (`app.experiment.prometheus_run`), then reported alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from app.cli.export import parse_time
from app.experiment.records import RunDirectoryError
from app.experiment.report_html import write_report
from app.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="turn a run directory, or a run Prometheus kept, into report.html and summary.json",
        description="Per-step throughput, latency, failures and schedule lag; capacity and knee; the bottleneck "
        "with its evidence; inline SVG plots. Self-contained HTML (no network needed to view it). With "
        "--prometheus, the run is read back from Prometheus (the Locust master, the service, node_exporter and "
        "postgres_exporter) and from the service's run record, and written to --out first.",
    )
    parser.add_argument("directory", type=Path, nargs="?", help="run directory written by `fleetbed experiment`")
    parser.add_argument("-o", "--output", type=Path, help="HTML file (default DIR/report.html)")
    parser.add_argument("--prometheus", help="Prometheus URL: report a run it kept (e.g. http://127.0.0.1:9090)")
    parser.add_argument(
        "--run", dest="run_id", help="with --prometheus: the run record's id, or `latest` (needs the service)"
    )
    parser.add_argument("--from", dest="start", type=parse_time, help="with --prometheus and no --run: start time")
    parser.add_argument("--to", dest="end", type=parse_time, help="with --from: end time (default now)")
    parser.add_argument("--service", help="the service's URL, for the run record (default: $FLEETBED_SERVICE_URL)")
    parser.add_argument(
        "--operator-token-file", type=Path, help="file holding the operator token (default: $FLEETBED_OPERATOR_TOKEN)"
    )
    parser.add_argument(
        "--out", type=Path, help="with --prometheus: the run directory to write (default ./report-TIME)"
    )
    parser.set_defaults(run=run)


def operator_token(args: argparse.Namespace, settings: Settings) -> str:
    token_file: Path | None = args.operator_token_file
    if token_file is not None:
        return token_file.read_text().strip()
    return str(os.environ.get("FLEETBED_OPERATOR_TOKEN") or settings.operator_token)


def from_prometheus(settings: Settings, args: argparse.Namespace) -> Path:
    from app.experiment.prometheus_run import RunWindow, build_run_directory, run_window

    now = time.time()
    if args.run_id is not None:
        service = args.service or os.environ.get("FLEETBED_SERVICE_URL")
        if not service:
            raise ValueError("--run needs the service's URL for its run record: --service http://HOST:8080")
        window = run_window(service, operator_token(args, settings), args.run_id, now)
    elif args.start is not None:
        end = args.end if args.end is not None else now
        if end <= args.start:
            raise ValueError("--to must be after --from")
        window = RunWindow(args.start, end, {"source": "prometheus", "started_at": args.start, "ended_at": end})
    else:
        raise ValueError("--prometheus needs --run RUN_ID (or latest) or --from TIME [--to TIME]")
    out = (args.out or Path(f"report-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(window.start))}")).resolve()
    build_run_directory(args.prometheus, window, out)
    return out


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.stack.prometheus_export import ExportError

    started = time.monotonic()
    try:
        if args.prometheus:
            directory = from_prometheus(settings, args)
        elif args.directory is not None:
            directory = args.directory
        else:
            raise ValueError("give a run directory, or --prometheus URL with --run or --from")
        summary = write_report(directory, args.output)
    except (RunDirectoryError, ExportError, ValueError, OSError) as exc:
        print(f"fleetbed report: {exc}", file=sys.stderr)
        return 2
    print(summary["bottleneck"]["sentence"])
    elapsed = time.monotonic() - started
    print(f"report: {args.output or directory / 'report.html'} ({elapsed:.1f} s)", file=sys.stderr)
    return 0
