"""`fleetbed up`: everything for an interactive session on one machine (see `app.experiment.interactive`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "up",
        help="database, service, Prometheus and the Locust web UI, until Ctrl-C",
        description="Start the database (embedded or FLEETBED_DATABASE_URL), apply migrations, then the service, "
        "Prometheus (when installed) and the Locust web UI with the kettle fleet. Prints every URL and the "
        "operator token; Ctrl-C stops all of it.",
    )
    parser.add_argument("--port", type=int, help="service port (default FLEETBED_PORT or 8080)")
    parser.add_argument("--workers", type=int, help="service worker processes (default FLEETBED_WORKERS or 1)")
    parser.add_argument("--web-port", type=int, default=8089, help="Locust web UI port (default 8089)")
    parser.add_argument("--locust-metrics-port", type=int, default=9646, help="generator /metrics (default 9646)")
    parser.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus port (default 9090)")
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.experiment.interactive import UpPorts, run_up
    from app.stack.processes import StartError

    ports = UpPorts(args.port or settings.port, args.web_port, args.locust_metrics_port, args.prometheus_port)
    try:
        return run_up(settings, ports, args.workers or settings.workers, settings.data_dir / "up")
    except StartError as exc:
        print(f"fleetbed up: {exc}", file=sys.stderr)
        return 2
